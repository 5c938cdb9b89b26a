"""Flower refuses to start without authentication.

Flower shows every job's arguments and results, and its API can revoke jobs,
resize pools and shut workers down: an open Flower is an open door to the
queues that move partners' XP. So `celery -A workers flower` stops at start-up,
with exit code 2 and a message naming what to set, unless one of these is
configured:

- HTTP basic auth: FLOWER_BASIC_AUTH=user:password[,user2:password2] (or
  --basic-auth=user:password, or FLOWER_BASIC_AUTH_FILE naming a file that
  holds it);
- OAuth: FLOWER_AUTH (or --auth), the regular expression of e-mail addresses
  allowed in, with FLOWER_AUTH_PROVIDER and FLOWER_OAUTH2_KEY/SECRET/REDIRECT_URI;
- the explicit opt-out for a trusted local machine:
  REWARDS_FLOWER_UNSAFE_NO_AUTH=1.

Authentication does not cover everything: Flower 2.2 serves /metrics and
/healthcheck to anyone who can reach its port, even with --basic-auth. The
deployment keeps that port private (docker-compose.yml publishes it on
127.0.0.1 only; put a reverse proxy with its own access rules in front to
reach it from elsewhere, and never route /metrics to the internet).

How it hooks in: `celery -A workers flower` imports this package while the
`celery` command group runs, before the `flower` sub-command reads its
options, and click already knows which sub-command follows. Only then is a
parse callback registered with tornado's options, which Flower uses for every
setting (FLOWER_* variables, command line, flowerconfig.py); worker and beat
processes never parse tornado options and are not affected.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from rewards import settings as settings_module

logger = logging.getLogger("rewards.flower")

OPT_OUT_VARIABLE = "REWARDS_FLOWER_UNSAFE_NO_AUTH"
MISSING_AUTH_MESSAGE = (
    "Flower refuses to start without authentication: set FLOWER_BASIC_AUTH=user:password "
    "(or pass --basic-auth=user:password), or configure OAuth with FLOWER_AUTH and "
    "FLOWER_OAUTH2_KEY, FLOWER_OAUTH2_SECRET, FLOWER_OAUTH2_REDIRECT_URI; on a trusted "
    f"local machine only, {OPT_OUT_VARIABLE}=1 starts it without"
)
MALFORMED_BASIC_AUTH_MESSAGE = (
    "FLOWER_BASIC_AUTH (--basic-auth) must be user:password, comma-separated for several "
    "users, each with a non-empty user and password"
)


def _is_user_password(credential: str) -> bool:
    user, separator, password = credential.partition(":")
    return bool(separator and user and password)


def authentication_problem(basic_auth: Sequence[str] | None, oauth_emails: str | None,
                           *, unsafe_no_auth: bool) -> str | None:
    """Why Flower must not start with these settings, or None when it may."""
    credentials = [credential for credential in basic_auth or () if credential]
    # The message never repeats the value: it is a password.
    if any(not _is_user_password(credential) for credential in credentials):
        return MALFORMED_BASIC_AUTH_MESSAGE
    if credentials or (oauth_emails or "").strip() or unsafe_no_auth:
        return None
    return MISSING_AUTH_MESSAGE


class _StartupCheck:
    """A tornado parse callback that stops Flower when authentication is missing.

    Flower parses its command line, then reads its config file if there is
    one and parses the command line again; each pass that ends runs the
    callbacks. The check waits for the last pass, so authentication set in
    flowerconfig.py counts.
    """

    def __init__(self, options) -> None:
        self.options = options
        self.passes_seen = 0

    def __call__(self) -> None:
        self.passes_seen += 1
        config_file_pending = self.passes_seen == 1 and os.path.isfile(self.options.conf)
        if config_file_pending:
            return
        unsafe_no_auth = settings_module.get().flower_unsafe_no_auth
        problem = authentication_problem(self.options.basic_auth, self.options.auth,
                                         unsafe_no_auth=unsafe_no_auth)
        if problem:
            print(f"rewards: {problem}", file=sys.stderr)
            raise SystemExit(2)
        if unsafe_no_auth and not (self.options.basic_auth or self.options.auth):
            logger.warning("Flower runs WITHOUT authentication (%s=1): anyone who can reach "
                           "its port can read job payloads and control workers", OPT_OUT_VARIABLE)


def install_if_running_flower() -> None:
    """Register the start-up check when this process is `celery … flower`."""
    import click

    context = click.get_current_context(silent=True)
    if context is None or context.invoked_subcommand != "flower":
        return
    # Flower reads FLOWER_BASIC_AUTH and its other options from the
    # environment after this runs, and knows nothing of FLOWER_BASIC_AUTH_FILE.
    settings_module.export_secret_files(settings_module.FLOWER_ENVIRONMENT_VARIABLES)
    from tornado.options import options

    options.add_parse_callback(_StartupCheck(options))

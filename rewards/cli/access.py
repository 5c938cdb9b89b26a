"""`rewards access ...`: provision the broker users of each role (rewards.access).

    rewards access redis-acl                     print an ACL file (redis.conf `aclfile`)
    rewards access redis-acl --apply URL         set the users on a running Redis, as an admin

Each role's user name and password come from the environment:
REWARDS_REDIS_<ROLE>_USER (default `rewards_<role>`) and
REWARDS_REDIS_<ROLE>_PASSWORD, or REWARDS_REDIS_<ROLE>_PASSWORD_FILE
(the Docker-secrets form). A role without a password is left out.
"""

from __future__ import annotations

import argparse
import os
import sys

import redis

from rewards import settings as settings_module
from rewards.access import redis as redis_access


def _role_variable(role: str, what: str) -> str:
    return f"REWARDS_REDIS_{role.upper()}_{what}"


def redis_users(environ=None) -> redis_access.Users:
    """{role: (user, password)} for every role given a password in the environment."""
    env = settings_module.SecretFileEnvironment(os.environ if environ is None else environ)
    users = {}
    for role in redis_access.ROLES:
        password = env.get(_role_variable(role, "PASSWORD"), "").strip()
        if password:
            users[role] = (env.get(_role_variable(role, "USER"), "").strip() or f"rewards_{role}", password)
    if not users:
        names = ", ".join(_role_variable(role, "PASSWORD") for role in redis_access.ROLES)
        raise settings_module.ConfigError(f"no Redis user to provision: set at least one of {names} "
                                          f"(or its _FILE form)")
    return users


def _broker_db(url: str) -> int:
    path = url.partition("://")[2].partition("/")[2].partition("?")[0]
    try:
        return int(path or 0)
    except ValueError:
        raise settings_module.ConfigError(f"the broker URL {url!r} names database {path!r}, not a number") from None


def cmd_redis_acl(args: argparse.Namespace) -> int:
    users = redis_users()
    broker_db = args.broker_db if args.broker_db is not None else _broker_db(settings_module.get().broker_url)
    if args.apply:
        try:
            redis_access.apply(redis.Redis.from_url(args.apply), users, broker_db=broker_db)
        except (redis.RedisError, ValueError) as error:
            raise settings_module.ConfigError(f"cannot set the Redis users through {args.apply!r}: {error}") from None
        print(f"set Redis users: {', '.join(f'{role}={name}' for role, (name, _) in users.items())}")
        return 0
    version = tuple(int(part) for part in args.redis_version.split(".")[:2])
    for line in redis_access.acl_file_lines(users, broker_db=broker_db, redis_version=version,
                                            disable_default=not args.keep_default):
        sys.stdout.write(line + "\n")
    return 0


def add_parser(commands) -> None:
    """`rewards access <broker>`: one sub-command per broker."""
    access = commands.add_parser("access", help="broker users of each role (upstream, operator, beat, worker)")
    brokers = access.add_subparsers(dest="access_command", required=True, metavar="BROKER")
    acl = brokers.add_parser("redis-acl", help="Redis 7 ACL users: print an ACL file, or --apply it")
    acl.add_argument("--apply", metavar="URL", help="set the users on this Redis (a user with ACL rights)")
    acl.add_argument("--broker-db", type=int, help="the broker's database number, part of the pub/sub channel "
                                                   "names (default: from CELERY_BROKER_URL)")
    acl.add_argument("--redis-version", default="7.2", help="the server's version, for the file (default 7.2; "
                                                            "7.0 and 7.1 know no CLIENT SETINFO)")
    acl.add_argument("--keep-default", action="store_true", help="do not add a line switching the default user off")
    acl.set_defaults(handler=cmd_redis_acl)

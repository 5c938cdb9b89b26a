"""Redis clients from a URL: one server, or the master that Redis Sentinel names.

    redis://127.0.0.1:6379/3                      one server (rediss:// for TLS)
    sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26379;sentinel://10.0.0.3:26379/3

The second form is Celery's for its result backend: every Sentinel,
`;`-separated, and the database number on any of them (the last one named
wins); a password in any of them (`sentinel://:secret@10.0.0.1:26379`) is
the master's. The master's name is REWARDS_REDIS_SENTINEL_MASTER,
which also sets Celery's `master_name`. A client asks the Sentinels where
the master is and asks again after a failover, so results, leaderboards and
dead letters follow a promoted replica without a restart.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "sentinel://"


def is_sentinel(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEME)


def sentinel_addresses(url: str) -> tuple[list[tuple[str, int]], int, str | None]:
    """The Sentinels' (host, port), the database number and the master's password of a sentinel:// URL."""
    addresses, db, password = [], 0, None
    for part in url.split(";"):
        parsed = urlsplit(part.strip())
        if parsed.scheme != "sentinel" or not parsed.hostname:
            raise ValueError(f"not a sentinel://host:port URL: {part!r}")
        addresses.append((parsed.hostname, parsed.port or 26379))
        if parsed.path.strip("/"):
            db = int(parsed.path.strip("/"))
        password = password or (unquote(parsed.password) if parsed.password else None)
    return addresses, db, password


def connect(url: str, *, timeout_s: float) -> redis.Redis:
    """A client for `url`: every connect and command gives up after `timeout_s`."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    from rewards import settings as settings_module

    addresses, db, password = sentinel_addresses(url)
    sentinel = Sentinel(addresses, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    return sentinel.master_for(settings_module.get().redis_sentinel_master, db=db, password=password,
                               socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

"""Redis 7 ACL users for each role: the keys, channels and commands that let it work, and no more.

There is no published list of what kombu's Redis transport and Celery's
Redis result backend need; the grants below are read from their source
(kombu 5.7 `transport/redis.py`, celery 5.7 `backends/redis.py`) and checked
by the tests, which run every role through a real broker and worker.

**Producers** (upstream, operator, beat) put a job straight onto its queue's
list (`rewards.contract.destination`: the anonymous exchange, nothing
declared, no events), so they may LPUSH onto the lists of the queues
`contract.QUEUES_BY_ROLE` gives them and nothing else: not the priority
lists beside them (kombu pops the plain list first, so a producer gains
nothing there), never `unacked*` or the binding tables. A result is read
by SUBSCRIBE to `celery-task-meta-<id>` and GET/MGET of the key of that
name; ids are random UUIDs and producers get neither SCAN, KEYS nor
PSUBSCRIBE, so one client cannot list or watch the results of others.
Beat also reads, for its metrics, the length of every queue list, the
count of dead letters and the leaderboards' checkpoint (LLEN, HLEN, HGET
on those keys alone).

**Workers** consume every queue: BRPOP over each queue and its priority
lists, the unacknowledged-message hash, index and lock (`unacked`,
`unacked_index`, `unacked_mutex`, with redis-py's lock script), the binding
tables (`_kombu.binding.*` of the contract, remote-control, event and
outbox-event exchanges, refreshed by kombu's Lua scripts), remote control
and events over pub/sub (`/<db>.celery.pidbox`, `/<db>.celeryev/...`: the
broker's database number is part of the channel name), the results they
store and publish, and the engine's own keys (`rewards:*`: leaderboards,
dead letters). Each of these is a selector of its own, so a command granted
for one family of keys (RENAME for leaderboards) cannot reach another (a
queue). Flower uses the worker's user: it reads queue lengths, sends remote
control and listens to every event, which is most of the worker's rights.

Everyone: only the commands listed, then `-@dangerous` (no FLUSHALL, CONFIG,
KEYS, DEBUG, MONITOR...). Redis ACLs are server-wide, not per database:
a pattern grants its keys in every database of the server.

Two ways out: `acl_file_lines(users)` for an `aclfile` (compose), and
`apply(admin_client, users)`, which resets and sets each user (idempotent).
Users are `{role: (username, password)}`; passwords travel as SHA-256
hashes (`#<hex>`), never in clear.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

import redis
from kombu.transport import redis as kombu_redis

from rewards import contract, deadletters, leaderboards

ROLE_WORKER = "worker"
ROLES = (*contract.SENDING_ROLES, ROLE_WORKER)

# kombu's own names: a queue's priority lists are `<queue><sep><step>`.
PRIORITY_SEPARATOR = kombu_redis.Channel.sep
PRIORITY_STEPS = tuple(kombu_redis.PRIORITY_STEPS)
UNACKED_KEYS = (kombu_redis.Channel.unacked_key, kombu_redis.Channel.unacked_index_key,
                kombu_redis.Channel.unacked_mutex_key)
BINDING_TABLE = kombu_redis.Channel.keyprefix_queue          # _kombu.binding.%s
BINDING_PERMANENT = kombu_redis.Channel.keyprefix_binding_permanent
BINDING_DEADLINES = kombu_redis.Channel.keyprefix_binding_deadlines
# Celery's remote control (pidbox) and event exchanges, and its result keys.
REMOTE_CONTROL_EXCHANGE = "celery.pidbox"
REPLY_EXCHANGE = "reply.celery.pidbox"
EVENT_EXCHANGE = "celeryev"
RESULT_KEYS = "celery-task-meta-*"
# The engine's own keys (rewards/leaderboards.py, rewards/deadletters.py).
ENGINE_KEYS = "rewards:*"

# Every connection: redis-py sends SELECT for a database other than 0 and
# CLIENT SETINFO on connect (it ignores a refusal, but Redis logs every
# one); kombu sends PING on a new channel and, with `client_name`, CLIENT
# SETNAME. AUTH is always allowed.
CONNECTION_COMMANDS = ("ping", "select", "client|setinfo", "client|setname")
# Commands younger than Redis 7.0, and the version that brought each: an
# ACL rule naming a command the server does not know is refused.
SINCE_VERSION = {"client|setinfo": (7, 2)}
LATEST = (7, 2)
# Every grant ends with this, so a dangerous command can never slip in.
NO_DANGEROUS = "-@dangerous"

Users = Mapping[str, tuple[str, str]]  # role -> (username, password)


@dataclass(frozen=True)
class Grant:
    """Commands allowed on some keys and channels: a role's root permissions or one of its selectors."""

    commands: tuple[str, ...]
    read_keys: tuple[str, ...] = ()
    write_keys: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()  # read and write
    channels: tuple[str, ...] = ()

    def rules(self, redis_version: tuple[int, int] = LATEST) -> list[str]:
        commands = [command for command in self.commands if SINCE_VERSION.get(command, (7, 0)) <= redis_version]
        return [*(f"%R~{key}" for key in self.read_keys), *(f"%W~{key}" for key in self.write_keys),
                *(f"~{key}" for key in self.keys), *(f"&{channel}" for channel in self.channels),
                *(f"+{command}" for command in commands), NO_DANGEROUS]


def priority_lists(queue: str) -> tuple[str, ...]:
    """A queue's list and the lists kombu keeps beside it for message priorities."""
    return (queue, *(f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS if step))


def producer_grants(role: str) -> tuple[Grant, ...]:
    """Push onto the role's queues; read results by their id."""
    return (
        Grant(CONNECTION_COMMANDS),
        Grant(("lpush",), write_keys=contract.QUEUES_BY_ROLE[role]),
        Grant(("get", "mget", "subscribe", "unsubscribe"), read_keys=(RESULT_KEYS,), channels=(RESULT_KEYS,)),
    )


def monitor_grants() -> tuple[Grant, ...]:
    """Beat's reading for its metrics (rewards.metrics.state): lengths and one checkpoint, read-only."""
    queues = tuple(key for queue in contract.QUEUES for key in priority_lists(queue))
    return (
        Grant(("llen",), read_keys=queues),
        Grant(("hlen",), read_keys=(deadletters.HASH_KEY,)),
        Grant(("hget",), read_keys=(leaderboards.CHECKPOINT_KEY,)),
    )


def worker_grants(broker_db: int) -> tuple[Grant, ...]:
    """Consume, acknowledge and restore every queue; remote control, events, results, the engine's keys."""
    exchanges = (*contract.QUEUES, contract.EVENTS_QUEUE, REMOTE_CONTROL_EXCHANGE, REPLY_EXCHANGE, EVENT_EXCHANGE)
    queues = [key for queue in (*contract.QUEUES, contract.EVENTS_QUEUE) for key in priority_lists(queue)]
    # Remote control: a worker's own fanout queue, the reply lists it pushes
    # to and reads (mingle), and the auto-deleted event queue of gossip.
    pidbox_queues = (f"*.{REMOTE_CONTROL_EXCHANGE}*", f"{EVENT_EXCHANGE}.*")
    fanout = f"/{broker_db}."  # kombu's fanout prefix: pub/sub channels carry the database number
    scripts = ("evalsha", "script|load", "script|exists")
    return (
        Grant((*CONNECTION_COMMANDS, "multi", "exec", "discard", "unwatch", "time")),
        Grant(("brpop", "rpop", "lpush", "rpush", "llen", "exists", "del", "pexpire"),
              keys=(*queues, *pidbox_queues)),
        # Ack emulation: the hash and index of unacknowledged messages, and the
        # lock (SET NX PX, released by a GET/DEL script) of the restore sweep.
        Grant(("hset", "hget", "hdel", "zadd", "zrem", "zrange", "watch", "set", "get", "del", *scripts),
              keys=UNACKED_KEYS),
        # Binding tables, kept alive and swept by kombu's Lua scripts.
        Grant(("sadd", "srem", "smembers", "zadd", "zrem", "zrangebyscore", "exists", "del", *scripts),
              keys=(*(BINDING_TABLE % name for name in exchanges), *(BINDING_PERMANENT % name for name in exchanges),
                    BINDING_DEADLINES)),
        Grant(("publish", "psubscribe", "punsubscribe"),
              channels=(f"{fanout}{REMOTE_CONTROL_EXCHANGE}", f"{fanout}{EVENT_EXCHANGE}/*",
                        f"{fanout}{EVENT_EXCHANGE}/worker.*")),
        Grant(("set", "setex", "get", "mget", "del", "publish", "subscribe", "unsubscribe"),
              keys=(RESULT_KEYS,), channels=(RESULT_KEYS,)),
        Grant(("hset", "hget", "hgetall", "hdel", "zadd", "zrem", "zrange", "zrank", "zcard", "zscore",
               "exists", "expire", "rename", "del", "watch"), keys=(ENGINE_KEYS,)),
    )


def grants(role: str, *, broker_db: int = 0) -> tuple[Grant, ...]:
    """A role's grants: the first is its root permissions, each other one an ACL selector."""
    if role == ROLE_WORKER:
        return worker_grants(broker_db)
    if role == contract.ROLE_BEAT:
        return (*producer_grants(role), *monitor_grants())
    if role in contract.QUEUES_BY_ROLE:
        return producer_grants(role)
    raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")


USERNAME = re.compile(r"[A-Za-z0-9_.:-]+")


def password_hash(password: str) -> str:
    if not password:
        raise ValueError("a Redis user's password must not be empty")
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def user_rules(role: str, password: str, *, broker_db: int = 0,
               redis_version: tuple[int, int] = LATEST) -> list[str]:
    """The ACL SETUSER rules of one user (after its name), from a clean slate."""
    root, *selectors = grants(role, broker_db=broker_db)
    return ["reset", "on", password_hash(password), *root.rules(redis_version),
            *("(" + " ".join(selector.rules(redis_version)) + ")" for selector in selectors)]


def _checked(users: Users) -> Users:
    unknown = sorted(set(users) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; roles: {', '.join(ROLES)}")
    for role, (username, _) in users.items():
        if not USERNAME.fullmatch(username or "") or username == "default":
            raise ValueError(f"Redis user name {username!r} for role {role} must be letters, digits, "
                             f"_ . : - and not 'default'")
    return users


def acl_file_lines(users: Users, *, broker_db: int = 0, redis_version: tuple[int, int] = LATEST,
                   disable_default: bool = True) -> list[str]:
    """Lines of a Redis `aclfile`: each role's user and, unless told otherwise, the default user switched off.

    Priority-list keys hold kombu's control characters (\\x06\\x16) as they
    are: Redis reads an ACL file's words raw and has no quoting there.
    """
    lines = [f"user {username} " + " ".join(user_rules(role, password, broker_db=broker_db,
                                                       redis_version=redis_version))
             for role, (username, password) in _checked(users).items()]
    if disable_default:
        lines.append("user default off resetpass resetkeys resetchannels -@all")
    return lines


def apply(admin: redis.Redis, users: Users, *, broker_db: int = 0) -> None:
    """Create or replace each role's user on a running Redis (ACL SETUSER ... reset ...); run twice, same result.

    `admin` needs ACL rights (the default user, or an administrator's). The
    default user is left as it is: switch it off once every client has a user.
    """
    version = server_version(admin)
    for role, (username, password) in _checked(users).items():
        admin.execute_command("ACL", "SETUSER", username,
                              *user_rules(role, password, broker_db=broker_db, redis_version=version))


def server_version(client: redis.Redis) -> tuple[int, int]:
    major, minor, *_ = str(client.info("server")["redis_version"]).split(".")
    version = (int(major), int(minor))
    if version < (7, 0):
        raise ValueError(f"Redis {major}.{minor} has no ACL selectors or %R~/%W~ key permissions: "
                         f"Redis 7.0 or later is needed")
    return version

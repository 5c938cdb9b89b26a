"""`rewards access ...`: provision the broker users of each role (rewards.access).

    rewards access redis-acl                     print an ACL file (redis.conf `aclfile`)
    rewards access redis-acl --apply URL         set the users on a running Redis, as an admin
    rewards access rabbitmq --definitions        print a definitions file (RabbitMQ `load_definitions`)
    rewards access rabbitmq --apply              set the users with rabbitmqctl, on the broker's host

Each role's user name and password come from the environment:
REWARDS_<BROKER>_<ROLE>_USER (default `rewards_<role>`) and
REWARDS_<BROKER>_<ROLE>_PASSWORD, or its _FILE form (the Docker-secrets
convention), BROKER being REDIS or RABBITMQ. A role without a password is
left out.
"""

from __future__ import annotations

import argparse
import os
import sys

import redis

from rewards import settings as settings_module
from rewards.access import rabbitmq as rabbitmq_access
from rewards.access import redis as redis_access


def _role_variable(broker: str, role: str, what: str) -> str:
    return f"REWARDS_{broker}_{role.upper()}_{what}"


def users_from_environment(broker: str, roles: tuple[str, ...], environ=None) -> dict[str, tuple[str, str]]:
    """{role: (user, password)} for every role given a password in the environment."""
    env = settings_module.SecretFileEnvironment(os.environ if environ is None else environ)
    users = {}
    for role in roles:
        password = env.get(_role_variable(broker, role, "PASSWORD"), "").strip()
        if password:
            users[role] = (env.get(_role_variable(broker, role, "USER"), "").strip() or f"rewards_{role}", password)
    if not users:
        names = ", ".join(_role_variable(broker, role, "PASSWORD") for role in roles)
        raise settings_module.ConfigError(f"no {broker.title()} user to provision: set at least one of {names} "
                                          f"(or its _FILE form)")
    return users


def redis_users(environ=None) -> redis_access.Users:
    return users_from_environment("REDIS", redis_access.ROLES, environ)


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


def cmd_rabbitmq(args: argparse.Namespace) -> int:
    users = users_from_environment("RABBITMQ", rabbitmq_access.ROLES)
    if args.apply:
        try:
            rabbitmq_access.apply(args.vhost, users)
        except (OSError, RuntimeError) as error:
            raise settings_module.ConfigError(f"cannot set the RabbitMQ users: {error}; run this on the "
                                              "broker's host, as root or the rabbitmq user") from None
        print(f"set RabbitMQ users on vhost {args.vhost}: "
              f"{', '.join(f'{role}={name}' for role, (name, _) in users.items())}")
        return 0
    sys.stdout.write(rabbitmq_access.definitions(args.vhost, users) + "\n")
    return 0


def add_commands(commands) -> None:
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
    rabbit = brokers.add_parser("rabbitmq", help="RabbitMQ users and permissions: print a definitions file, "
                                                 "or --apply them with rabbitmqctl")
    rabbit.add_argument("--vhost", default="rewards", help="the engine's vhost (default rewards)")
    action = rabbit.add_mutually_exclusive_group()
    action.add_argument("--definitions", action="store_true",
                        help="print a definitions file with the topology (the default)")
    action.add_argument("--apply", action="store_true", help="create or update the users with rabbitmqctl")
    rabbit.set_defaults(handler=cmd_rabbitmq)

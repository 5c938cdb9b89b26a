"""RabbitMQ users for each role, and the permissions that let each do its work and no more.

RabbitMQ checks three regular expressions per user and vhost (configure,
write, read) against the names of the exchanges and queues it touches. A
publisher needs write permission on the exchange it publishes to; the
contract publishes each job through its queue's own exchange
(`rewards.contract.destination`), so the exchanges a role may write are the
queues it may send to (`contract.QUEUES_BY_ROLE`). Producers declare nothing
and send no events, so they configure nothing; upstream apps may also read
the `rewards.events` queue the outbox relay fills. Workers own the topology:
they declare the queues, the event and remote-control exchanges, and read
and write all of them.

`apply` provisions the users with rabbitmqctl (on the broker's host, as
root or the rabbitmq user); `definitions` writes the same as a definitions
file RabbitMQ loads at boot (compose).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from rewards import contract

ROLE_WORKER = "worker"
ROLES = (*contract.SENDING_ROLES, ROLE_WORKER)
NOTHING = "^$"
EVERYTHING = ".*"


@dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str


def _any_of(names: tuple[str, ...]) -> str:
    return "^(" + "|".join(re.escape(name) for name in names) + ")$"


def permissions(role: str) -> Permissions:
    """The configure, write and read expressions of `role` on the engine's vhost."""
    if role == ROLE_WORKER:
        return Permissions(EVERYTHING, EVERYTHING, EVERYTHING)
    if role not in contract.QUEUES_BY_ROLE:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    reads = (contract.EVENTS_QUEUE,) if role == contract.ROLE_UPSTREAM else ()
    return Permissions(NOTHING, _any_of(contract.QUEUES_BY_ROLE[role]), _any_of(reads) if reads else NOTHING)


Users = Mapping[str, tuple[str, str]]  # role -> (username, password)


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120)


def _check(done: subprocess.CompletedProcess, what: str) -> None:
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl could not {what}: {done.stderr.strip() or done.stdout.strip()}")


def apply(vhost: str, users: Users) -> None:
    """Create the vhost if missing, and each role's user with its password and permissions (idempotent)."""
    if vhost not in _rabbitmqctl("list_vhosts").stdout.split():
        _check(_rabbitmqctl("add_vhost", vhost), f"add vhost {vhost}")
    existing = {line.split()[0] for line in _rabbitmqctl("list_users").stdout.splitlines() if line.strip()}
    for role, (username, password) in users.items():
        granted = permissions(role)
        if username in existing:
            _check(_rabbitmqctl("change_password", username, password), f"set the password of {username}")
        else:
            _check(_rabbitmqctl("add_user", username, password), f"add user {username}")
        # No tags: none of these users may use the management UI or impersonate another.
        _check(_rabbitmqctl("set_user_tags", username), f"clear the tags of {username}")
        _check(_rabbitmqctl("set_permissions", "-p", vhost, username, granted.configure, granted.write,
                            granted.read), f"set the permissions of {username}")


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password)), 4 random salt bytes."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(vhost: str, users: Users) -> str:
    """A definitions file RabbitMQ loads at boot (`load_definitions`): vhost, users, permissions, topology.

    The topology is the workers' (`contract.kombu_queues`, `parked_queue`,
    `events_queue`: durable quorum queues, each bound to an exchange of its
    own name), so producers can publish before the first worker has started.
    """
    queues = (*contract.kombu_queues(), contract.parked_queue(), contract.events_queue())
    document = {
        "vhosts": [{"name": vhost}],
        "users": [{"name": username, "password_hash": password_hash(password),
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}
                  for username, password in users.values()],
        "permissions": [{"user": username, "vhost": vhost, **vars(permissions(role))}
                        for role, (username, _) in users.items()],
        "exchanges": [{"name": queue.exchange.name, "vhost": vhost, "type": queue.exchange.type, "durable": True,
                       "auto_delete": False, "internal": False, "arguments": {}} for queue in queues],
        "queues": [{"name": queue.name, "vhost": vhost, "durable": True, "auto_delete": False,
                    "arguments": queue.queue_arguments} for queue in queues],
        "bindings": [{"source": queue.exchange.name, "vhost": vhost, "destination": queue.name,
                      "destination_type": "queue", "routing_key": queue.routing_key or "", "arguments": {}}
                     for queue in queues],
    }
    return json.dumps(document, indent=2)

"""RabbitMQ permissions by role, derived from the contract's queues (rewards.access.rabbitmq)."""

import base64
import hashlib
import json
import re

import pytest

from rewards import contract
from rewards.access import rabbitmq


def writable(role: str, exchange: str) -> bool:
    return re.fullmatch(rabbitmq.permissions(role).write, exchange) is not None


@pytest.mark.parametrize("role", contract.SENDING_ROLES)
def test_a_sending_role_writes_exactly_its_queues_exchanges_and_configures_nothing(role):
    granted = rabbitmq.permissions(role)
    assert [name for name in contract.QUEUES if writable(role, name)] == list(contract.QUEUES_BY_ROLE[role])
    assert not any(writable(role, name) for name in ("amq.default", "", "celeryev", "celery.pidbox",
                                                      "checkinsx", "xclaims", "rewards.events"))
    assert re.fullmatch(granted.configure, "checkins") is None and granted.configure == "^$"


def test_upstream_reads_only_the_events_queue_and_workers_own_everything():
    assert re.fullmatch(rabbitmq.permissions("upstream").read, "rewards.events")
    assert not re.fullmatch(rabbitmq.permissions("upstream").read, "operator")
    assert vars(rabbitmq.permissions("worker")) == {"configure": ".*", "write": ".*", "read": ".*"}


def test_an_unknown_role_is_named():
    with pytest.raises(ValueError, match="unknown role 'admin'; roles: upstream, operator, beat, worker"):
        rabbitmq.permissions("admin")


def test_the_password_hash_is_rabbitmqs_salted_sha256():
    salt = b"\x90\x8d\xc6\x0a"
    hashed = base64.b64decode(rabbitmq.password_hash("secret", salt))
    assert hashed == salt + hashlib.sha256(salt + b"secret").digest()


def test_definitions_hold_each_user_with_its_permissions_and_no_password_in_clear():
    users = {"upstream": ("app", "pw-app"), "worker": ("engine", "pw-engine")}
    document = json.loads(rabbitmq.definitions("rewards", users))
    assert [user["name"] for user in document["users"]] == ["app", "engine"]
    assert "pw-app" not in json.dumps(document)
    assert {(p["user"], p["write"]) for p in document["permissions"]} == {("app", "^(checkins|claims)$"),
                                                                          ("engine", ".*")}


def test_definitions_declare_the_topology_the_workers_declare():
    from rewards import contract

    document = json.loads(rabbitmq.definitions("rewards", {"worker": ("engine", "pw")}))
    declared = {(q.name, q.exchange.name, q.exchange.type, q.routing_key or "", json.dumps(q.queue_arguments))
                for q in (*contract.kombu_queues(), contract.parked_queue(), contract.events_queue())}
    types = {e["name"]: e["type"] for e in document["exchanges"]}
    arguments = {q["name"]: json.dumps(q["arguments"]) for q in document["queues"]}
    defined = {(b["destination"], b["source"], types[b["source"]], b["routing_key"], arguments[b["destination"]])
               for b in document["bindings"]}
    assert declared == defined
    assert all(q["durable"] and not q["auto_delete"] for q in document["queues"])


def test_every_job_queue_is_a_quorum_queue_that_parks_what_it_cannot_deliver():
    from rewards import contract

    for queue in contract.kombu_queues():
        assert queue.queue_arguments["x-queue-type"] == "quorum"
        assert queue.queue_arguments["x-dead-letter-exchange"] == contract.parked_queue().exchange.name
        assert queue.queue_arguments["x-dead-letter-strategy"] == "at-least-once"


def test_the_cli_prints_definitions_for_the_users_the_environment_names(monkeypatch, capsys, tmp_path):
    from rewards.cli.main import main

    secret = tmp_path / "beat-password"
    secret.write_text("beat-pw\n")
    monkeypatch.setenv("REWARDS_RABBITMQ_UPSTREAM_PASSWORD", "up-pw")
    monkeypatch.setenv("REWARDS_RABBITMQ_UPSTREAM_USER", "shop")
    monkeypatch.setenv("REWARDS_RABBITMQ_BEAT_PASSWORD_FILE", str(secret))

    assert main(["access", "rabbitmq", "--vhost", "prod"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [(user["name"]) for user in document["users"]] == ["shop", "rewards_beat"]
    assert {p["vhost"] for p in document["permissions"]} == {"prod"}


def test_the_cli_names_the_variables_when_no_user_is_given(monkeypatch, capsys):
    from rewards.cli.main import main

    for role in rabbitmq.ROLES:
        monkeypatch.delenv(f"REWARDS_RABBITMQ_{role.upper()}_PASSWORD", raising=False)
    assert main(["access", "rabbitmq"]) == 2
    assert "set at least one of REWARDS_RABBITMQ_UPSTREAM_PASSWORD" in capsys.readouterr().err

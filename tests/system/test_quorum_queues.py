"""RabbitMQ's job queues are quorum queues, and a job handed back too often is parked, never dropped.

A real worker declares the topology on a vhost of this module's own; the
test then plays a worker that crashes on one job every time: it takes the
message and hands it back, until RabbitMQ stops delivering it.
"""

from __future__ import annotations

import os
import subprocess
import time
from urllib.parse import urlsplit

import pytest
from kombu import Connection

from rewards import contract
from tests.support.processes import start_worker_process, wait_until

pytestmark = pytest.mark.system

VHOST = "rewards_test_quorum"


def _url() -> str:
    netloc = urlsplit(os.environ["REWARDS_SYSTEM_AMQP_URL"]).netloc
    return f"amqp://{netloc}/{VHOST}"


def _queues() -> dict[str, tuple[str, int]]:
    """Each queue of the vhost: its type and how many messages it holds."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", VHOST, "name", "type", "messages"],
                         capture_output=True, text=True).stdout
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    return {name: (kind, int(messages)) for name, kind, messages in rows if messages.isdigit()}


def _get(queue, wait_s: float = 2.0):
    """The next message, waiting a little: a message handed back is queued again asynchronously."""
    deadline = time.monotonic() + wait_s
    while (message := queue.get(no_ack=False)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return message


@pytest.fixture
def declared_by_a_worker(tmp_path):
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", VHOST], capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", VHOST], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"],
                   check=True, capture_output=True)
    worker = start_worker_process("quorum", ",".join(contract.QUEUES), {"CELERY_BROKER_URL": _url()}, tmp_path)
    try:
        wait_until(lambda: contract.PARKED_QUEUE in _queues(), 60, "the worker to declare its queues", (worker,))
    finally:
        worker.kill()
    yield
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", VHOST], capture_output=True)


def test_the_worker_declares_every_job_queue_and_the_parked_queue_as_quorum_queues(declared_by_a_worker):
    queues = _queues()
    assert {name: kind for name, (kind, _) in queues.items()} == dict.fromkeys(
        (*contract.QUEUES, contract.PARKED_QUEUE), "quorum"), queues


def test_a_job_handed_back_past_the_delivery_limit_is_parked_with_its_body(declared_by_a_worker):
    body = {"partner_id": 7, "amount": 50, "reason": "poison", "request_id": "parked-1"}
    with Connection(_url(), transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        producer.publish(body, exchange=contract.QUEUE_OPERATOR, routing_key=contract.QUEUE_OPERATOR,
                         serializer="json", delivery_mode="persistent")
        operator = contract.kombu_queues()[contract.QUEUES.index(contract.QUEUE_OPERATOR)](connection.channel())
        deliveries = 0
        # A worker that dies on the job hands it back each time; bounded, so a queue that never parks it fails.
        while deliveries <= contract.DELIVERY_LIMIT + 5:
            message = _get(operator)
            if message is None:
                break
            deliveries += 1
            message.requeue()
        assert deliveries == contract.DELIVERY_LIMIT + 1, f"delivered {deliveries} times"
        wait_until(lambda: _queues()[contract.PARKED_QUEUE][1] == 1, 10, "the job to be parked")
        assert _queues()[contract.QUEUE_OPERATOR][1] == 0
        parked = contract.parked_queue()(connection.channel()).get(no_ack=True)
        assert parked.decode() == body
        assert parked.headers["x-first-death-reason"] == "delivery_limit"
        assert parked.headers["x-first-death-queue"] == contract.QUEUE_OPERATOR

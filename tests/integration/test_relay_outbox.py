"""The outbox relay: at least once, with stable event ids, through a webhook or the events queue."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kombu import Connection
from sqlalchemy import text

from rewards import contract, db
from rewards import settings as settings_module
from rewards.ledger import outbox
from schedules import relay_outbox
from schedules.relay_outbox import Limits
from schedules.sinks import EVENTS_QUEUE_NAME, WebhookSink, verify
from tests.support.jobs import run
from tests.support.streaks import checkin

SECRET = "test-webhook-secret-0123456789"
T = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every request and can be made to fail."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.failing = False
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    status = 500 if receiver.failing else 204
                    receiver.requests.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                """Keep http.server's per-request lines out of the test output."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/rewards-events"

    def accepted_event_ids(self) -> list[str]:
        return [headers["X-Rewards-Event-Id"] for headers, _, status in self.requests if status == 204]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    thread = threading.Thread(target=endpoint.server.serve_forever, daemon=True)
    thread.start()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def emit_events(count: int, now: datetime = T) -> list[str]:
    with db.transaction() as conn:
        return [str(outbox.emit(conn, "test.event", 500 + n, {"n": n}, now=now)) for n in range(count)]


def relay(sink, now: datetime, batch_size: int = 10):
    return relay_outbox.run(db.get_engine(), now, sink, Limits(batch_size=batch_size, budget_s=10),
                            retention_engine=db.get_retention_engine())


def rows(conn) -> list:
    return conn.execute(text("SELECT * FROM outbox ORDER BY id")).fetchall()


def test_webhook_deliveries_carry_a_signature_the_receiver_can_verify(receiver, conn):
    event_ids = emit_events(5)
    summary = relay(WebhookSink(receiver.url, SECRET, timeout_s=2), T, batch_size=2)
    assert (summary.changed, summary.batches, summary.details["delivered"]) == (5, 3, 5)
    assert sorted(receiver.accepted_event_ids()) == sorted(event_ids)
    for headers, body, _ in receiver.requests:
        timestamp, signature = headers["X-Rewards-Timestamp"], headers["X-Rewards-Signature"]
        assert signature.startswith("sha256=")
        assert verify(SECRET, timestamp, body, signature, now_s=time.time())
        assert not verify(SECRET, timestamp, body + b" ", signature, now_s=time.time())
        assert not verify("another-secret-of-some-length", timestamp, body, signature, now_s=time.time())
        assert not verify(SECRET, timestamp, body, signature, now_s=time.time() + 3_600)
        message = json.loads(body)
        assert message["event_id"] == headers["X-Rewards-Event-Id"]
        assert (message["event_type"], headers["X-Rewards-Event-Type"]) == ("test.event", "test.event")
    assert {(row.delivered_at, row.attempts) for row in rows(conn)} == {(T, 1)}


def test_a_failing_webhook_delays_delivery_and_every_event_arrives_once_it_recovers(receiver, conn):
    event_ids = emit_events(4)
    sink = WebhookSink(receiver.url, SECRET, timeout_s=2)
    receiver.failing = True
    down = relay(sink, T)
    assert (down.changed, down.details["failed"], len(receiver.requests)) == (0, 1, 1)
    first, *rest = rows(conn)
    assert (first.attempts, first.next_attempt_at, first.last_error) == (1, T + timedelta(seconds=1),
                                                                          "webhook answered HTTP 500")
    assert {(row.attempts, row.next_attempt_at) for row in rest} == {(0, T + timedelta(seconds=1))}

    assert relay(sink, T).examined == 0                      # nothing is due before the backoff ends
    relay(sink, T + timedelta(seconds=1))
    assert rows(conn)[0].next_attempt_at == T + timedelta(seconds=3)   # the delay doubles
    assert all(row.delivered_at is None for row in rows(conn))

    receiver.failing = False
    recovered = relay(sink, T + timedelta(minutes=5))
    assert recovered.changed == 4
    assert sorted(receiver.accepted_event_ids()) == sorted(event_ids)
    # Failed tries reached the receiver with the same event ids it later accepted.
    assert {headers["X-Rewards-Event-Id"] for headers, _, _ in receiver.requests} <= set(event_ids)
    assert all(row.delivered_at is not None and row.last_error is None for row in rows(conn))


def test_an_unreachable_webhook_loses_nothing(receiver, conn):
    emit_events(2)
    receiver.server.shutdown()
    receiver.server.server_close()
    summary = relay(WebhookSink(receiver.url, SECRET, timeout_s=1), T)
    assert (summary.changed, summary.details["failed"]) == (0, 1)
    assert rows(conn)[0].last_error.startswith("webhook unreachable")
    assert all(row.delivered_at is None for row in rows(conn))


def test_events_claimed_by_a_relay_that_died_come_back_when_the_lease_ends(receiver, conn):
    event_ids = emit_events(3)
    lease_s = Limits(budget_s=10).lease_s
    with db.transaction() as claiming:           # a relay claims, then dies before delivering
        assert len(outbox.claim(claiming, now=T, limit=10, lease_s=lease_s)) == 3
    sink = WebhookSink(receiver.url, SECRET, timeout_s=2)
    assert relay(sink, T + timedelta(seconds=lease_s - 1)).examined == 0
    assert relay(sink, T + timedelta(seconds=lease_s)).changed == 3
    assert sorted(receiver.accepted_event_ids()) == sorted(event_ids)


def test_two_relays_claiming_at_once_never_take_the_same_events(conn):
    emit_events(6)
    engine = db.get_engine()
    with engine.begin() as first, engine.begin() as second:
        taken_first = outbox.claim(first, now=T, limit=4, lease_s=60)
        taken_second = outbox.claim(second, now=T, limit=4, lease_s=60)   # skips the locked rows
    ids_first = {m.event_id for m in taken_first}
    ids_second = {m.event_id for m in taken_second}
    assert (len(ids_first), len(ids_second), ids_first & ids_second) == (4, 2, set())


def test_delivered_events_are_pruned_after_the_retention_period(receiver, conn):
    emit_events(3)
    sink = WebhookSink(receiver.url, SECRET, timeout_s=2)
    relay(sink, T)
    emit_events(1, now=T + timedelta(days=1))
    receiver.failing = True
    summary = relay(sink, T + timedelta(days=7, seconds=1))
    assert summary.details["pruned"] == 3
    [left] = rows(conn)
    assert left.delivered_at is None


def test_the_relay_job_publishes_events_on_the_rewards_events_queue(client, conn):
    broker_url = settings_module.get().maintenance.events_broker_url
    with Connection(broker_url) as broker:
        queue = broker.SimpleQueue(EVENTS_QUEUE_NAME)
        queue.clear()
        for offset in range(7):
            checkin(client, 510, date(2026, 6, 1) + timedelta(days=offset))
        result = run(client, contract.MAINTENANCE_RELAY_OUTBOX)
        assert (result["delivered"], result["failed"]) == (2, 0)
        received = []
        for _ in range(2):
            message = queue.get(timeout=10)
            received.append((message.headers["event_id"], message.payload))
            message.ack()
        queue.close()
    stored = {str(row.event_id): row for row in rows(conn)}
    assert {payload["event_type"] for _, payload in received} == {"checkin.milestone", "badge.awarded"}
    for event_id, payload in received:
        assert payload["event_id"] == event_id and event_id in stored
        assert payload["partner_id"] == 510 and payload["payload"] == stored[event_id].payload
    assert all(row.delivered_at is not None for row in stored.values())

"""Where the outbox relay delivers events: a broker queue, or a signed HTTP webhook.

A sink's `deliver(message)` returns when the event is handed over and raises
`DeliveryError` when it is not; the relay then tries again later. Delivery is
at least once: a consumer that sees an `event_id` twice drops the second.

Queue sink (REWARDS_EVENTS_SINK=queue, the default): a JSON message per event
on the `rewards.events` queue of REWARDS_EVENTS_BROKER_URL (the Celery broker
unless set), readable with kombu or any client of that broker. The body is
`Message.body()`; the event id is also in the `event_id` message header.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Protocol

from kombu import Connection, Producer

from rewards import contract
from rewards.ledger.outbox import Message
from rewards.settings import Settings, broker_transport, broker_transport_options

EVENTS_QUEUE_NAME = contract.EVENTS_QUEUE
EVENTS_QUEUE = contract.events_queue()

SIGNATURE_HEADER = "X-Rewards-Signature"
EVENT_ID_HEADER = "X-Rewards-Event-Id"
EVENT_TYPE_HEADER = "X-Rewards-Event-Type"
TIMESTAMP_HEADER = "X-Rewards-Timestamp"


class DeliveryError(Exception):
    """The sink did not take the event; it stays in the outbox for a later try."""


class Sink(Protocol):
    def deliver(self, message: Message) -> None: ...

    def close(self) -> None: ...


class QueueSink:
    """Publishes each event as a persistent JSON message on the rewards.events queue."""

    def __init__(self, broker_url: str, *, transport: str | None = None,
                 transport_options: dict | None = None, timeout_s: float = 5.0):
        self._connection = Connection(broker_url, connect_timeout=timeout_s, transport=transport,
                                      transport_options=transport_options or {})
        self._producer: Producer | None = None

    def deliver(self, message: Message) -> None:
        try:
            if self._producer is None:
                self._producer = Producer(self._connection.channel())
            self._producer.publish(
                message.body(), exchange=EVENTS_QUEUE.exchange, routing_key=EVENTS_QUEUE_NAME,
                declare=[EVENTS_QUEUE], serializer="json", delivery_mode="persistent",
                headers={"event_id": message.event_id, "event_type": message.event_type},
                retry=True, retry_policy={"max_retries": 1, "interval_start": 0.2},
            )
        except Exception as error:  # any broker fault: the event waits for a later try
            self._producer = None
            raise DeliveryError(f"publishing to {EVENTS_QUEUE_NAME}: {type(error).__name__}: {error}") from error

    def close(self) -> None:
        self._connection.release()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Rewards-Signature value: `sha256=` and the HMAC-SHA256 hex of `timestamp.body`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now_s: float,
           tolerance_s: float = 300.0) -> bool:
    """What a receiver runs: the signature matches and the timestamp is recent.

    1. Read the raw request body as bytes, before any JSON parsing.
    2. Take the X-Rewards-Timestamp header (Unix seconds) and X-Rewards-Signature.
    3. Compute HMAC-SHA256 with the shared secret over
       `<timestamp> + "." + <raw body>`, hex-encode it, prefix `sha256=`, and
       compare with `hmac.compare_digest` (constant time).
    4. Refuse a timestamp more than a few minutes from your clock: the
       timestamp is signed too, so an old request cannot be replayed as new.
    5. De-duplicate on X-Rewards-Event-Id (also `event_id` in the body):
       delivery is at least once.
    """
    try:
        fresh = abs(now_s - int(timestamp)) <= tolerance_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookSink:
    """POSTs each event as JSON to a URL, signed with HMAC-SHA256 (see `verify`).

    Any 2xx answer is a delivery; anything else (an error status, a refused
    connection, a timeout) leaves the event for a later try.
    """

    def __init__(self, url: str, secret: str, *, timeout_s: float = 5.0):
        self.url = url
        self._secret = secret
        self._timeout_s = timeout_s

    def deliver(self, message: Message) -> None:
        body = json.dumps(message.body(), separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json",
            "User-Agent": "rewards-outbox-relay",
            EVENT_ID_HEADER: message.event_id,
            EVENT_TYPE_HEADER: message.event_type,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        })
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                response.read(1024)
        except urllib.error.HTTPError as error:
            raise DeliveryError(f"webhook answered HTTP {error.code}") from error
        except (urllib.error.URLError, OSError) as error:
            raise DeliveryError(f"webhook unreachable: {error}") from error

    def close(self) -> None:
        pass


def from_settings(current: Settings) -> Sink:
    """The sink REWARDS_EVENTS_SINK names, configured from the settings."""
    maintenance = current.maintenance
    if maintenance.events_sink == "webhook":
        return WebhookSink(maintenance.webhook_url, maintenance.webhook_secret,
                           timeout_s=maintenance.webhook_timeout_s)
    # The embedded filesystem:// broker needs its folders, as the workers do.
    options = broker_transport_options(current, maintenance.events_broker_url)
    return QueueSink(maintenance.events_broker_url,
                     transport=broker_transport(current, maintenance.events_broker_url),
                     transport_options=options,
                     timeout_s=maintenance.webhook_timeout_s)

"""The embedded broker (rewards.transport) loses no message while producer and consumer race.

kombu's own filesystem transport hands a consumer a message file before its
producer has written it; a consumer polling fast enough then reads 0 bytes
and the message is gone. These tests publish from a producer process of its
own while this process drains the same folder as fast as it can.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kombu import Connection, Consumer, Exchange, Queue

from rewards.transport import TRANSPORT, message_name
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.system

MESSAGES = 20_000
QUEUE = Queue("stress", Exchange("stress", type="direct"), routing_key="stress")
# kombu keeps bindings in memory for the whole process, so a queue published
# to from this process is declared under a name no other test uses.
LOCAL_QUEUE = Queue("local", Exchange("local", type="direct"), routing_key="local")
# No message for this long while the producer has finished: the rest is lost.
QUIET_S_MAX = 10.0


def transport_options(folder: Path) -> dict:
    return {"data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"), "claim_folder": str(folder / "claimed"),
            "quarantine_folder": str(folder / "quarantine"), "polling_interval": 0.01}


def files_in(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


def start_producer(folder: Path, count: int) -> subprocess.Popen:
    script = ("from kombu import Connection, Exchange, Producer, Queue\n"
              "queue = Queue('stress', Exchange('stress', type='direct'), routing_key='stress')\n"
              f"with Connection('filesystem://', transport={TRANSPORT!r},\n"
              f"                transport_options={transport_options(folder)!r}) as connection:\n"
              "    producer = Producer(connection.channel())\n"
              f"    for seq in range({count}):\n"
              "        producer.publish({'seq': seq}, exchange=queue.exchange, routing_key='stress',\n"
              "                         declare=[queue], serializer='json')\n")
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)


def drain_while_producing(folder: Path, count: int) -> set[int]:
    """Consume until every message arrived, or the producer ended and nothing came for a while."""
    received: set[int] = set()

    def on_message(body, message) -> None:
        received.add(body["seq"])
        message.ack()

    with Connection("filesystem://", transport=TRANSPORT, transport_options=transport_options(folder)) as conn:
        with Consumer(conn.channel(), [QUEUE], callbacks=[on_message]):
            producer = start_producer(folder, count)
            last_message_at = time.monotonic()
            while len(received) < count:
                try:
                    conn.drain_events(timeout=0.5)
                    last_message_at = time.monotonic()
                except TimeoutError:
                    if producer.poll() is not None and time.monotonic() - last_message_at > QUIET_S_MAX:
                        break
            _, producer_stderr = producer.communicate(timeout=60)
    assert producer.returncode == 0, f"the producer failed:\n{producer_stderr}"
    return received


@pytest.mark.parametrize("run", [1, 2, 3])
def test_a_consumer_draining_while_a_producer_publishes_20000_messages_loses_none(tmp_path, run):
    received = drain_while_producing(tmp_path, MESSAGES)

    lost = sorted(set(range(MESSAGES)) - received)
    assert not lost, f"{len(lost)} of {MESSAGES} messages lost, e.g. {lost[:10]}"
    for leftover in ("quarantine", "claimed", "queue"):
        assert files_in(tmp_path / leftover) == [], leftover


def test_an_unreadable_message_file_is_quarantined_and_the_consumer_carries_on(tmp_path, caplog):
    queue_folder = tmp_path / "queue"
    queue_folder.mkdir()
    empty, garbage = message_name("local"), message_name("local")
    (queue_folder / empty).write_bytes(b"")
    (queue_folder / garbage).write_bytes(b"\xff{not json")
    received = []

    def on_message(body, message) -> None:
        received.append(body)
        message.ack()

    with Connection("filesystem://", transport=TRANSPORT, transport_options=transport_options(tmp_path)) as conn:
        with conn.Producer() as producer:
            producer.publish({"seq": 1}, exchange=LOCAL_QUEUE.exchange, routing_key="local",
                             declare=[LOCAL_QUEUE])
        with Consumer(conn.channel(), [LOCAL_QUEUE], callbacks=[on_message]):
            with caplog.at_level(logging.ERROR, logger="rewards.broker"):
                conn.drain_events(timeout=5)

    assert received == [{"seq": 1}]
    assert files_in(tmp_path / "quarantine") == sorted([empty, garbage])
    quarantined = [record.getMessage() for record in caplog.records]
    assert len(quarantined) == 2 and all("event=broker.quarantined" in line for line in quarantined)

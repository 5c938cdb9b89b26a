"""kombu transports as the workers use them: each job learns the queue it was really taken from.

**Where a message came from.** A worker runs a job only if it arrived
through the job's own queue (workers/base.py), so an upstream app that may
write only to `checkins` and `claims` cannot run an operator's adjustment.
RabbitMQ states the exchange of every delivery itself, and a publisher needs
write permission on that exchange. Redis and the embedded broker keep no
such fact: kombu's `delivery_info` travels inside the message, written by
whoever pushed it, so it can say anything. Here the consumer overwrites it
with the queue it popped the message from (and that queue's own exchange),
before the message is handed to Celery or recorded as unacknowledged; a
redelivered message goes back to that same queue. `install()` makes kombu's
`redis://`, `rediss://` and `sentinel://` schemes use these classes, so the
URLs keep their meaning (TLS included) and only delivery changes.

**A Redis restart.** Their channels also keep the broker's address for the
moment kombu needs it after a lost connection was torn down, so a worker
survives a Redis restart instead of exiting (`KeepsBrokerAddress`).

**The embedded broker**: kombu's `filesystem://` transport, made safe to share between processes.

kombu 5.7's filesystem transport creates a message's final `.msg` file and
writes it afterwards, and its consumer takes no lock: a worker that lists the
folder between the two reads an empty file, the message is gone and the JSON
error it raises stops the worker (kombu issue 1551). Here:

- a producer writes each message to a hidden temporary file in the same
  folder, fsyncs it and renames it into place (`os.replace`), so a `.msg`
  file is either absent or complete;
- a consumer claims a message by renaming it into its claim folder (atomic
  on one file system: of two consumers exactly one wins), reads it there and
  deletes it;
- a file that still cannot be parsed (written by something else, or damaged)
  is moved to the quarantine folder and logged, never raised into the
  consumer loop, so one bad file cannot stop a worker.

Producers and workers select it by class path (`TRANSPORT`), through
`rewards.settings.broker_transport`, for any `filesystem://` URL.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from queue import Empty

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

from rewards import contract
from rewards.logs import log_event

TRANSPORT = "rewards.transport:Transport"
MESSAGE_SUFFIX = ".msg"
logger = logging.getLogger("rewards.broker")


def message_name(queue: str) -> str:
    """`<wall-clock ns, zero-padded>_<uuid>.<queue>.msg`: sorts oldest first, never collides."""
    return f"{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}{MESSAGE_SUFFIX}"


def queue_of(filename: str) -> str | None:
    """The queue a message file belongs to, or None for anything that is not a message."""
    if filename.startswith(".") or not filename.endswith(MESSAGE_SUFFIX):
        return None
    return filename.partition(".")[2][: -len(MESSAGE_SUFFIX)] or None


def write_atomically(folder: str, filename: str, data: bytes) -> None:
    """Write `data` to `folder/filename` so that no reader ever sees part of it."""
    temporary = os.path.join(folder, f".{filename}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            # Durable before it is visible: a machine crash cannot leave a
            # listed message with no content.
            os.fsync(file.fileno())
        os.replace(temporary, os.path.join(folder, filename))
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


@dataclass(frozen=True)
class FolderCounts:
    queued: dict[str, int]
    claimed: int
    quarantined: int


def folder_counts(broker_folder: Path) -> FolderCounts:
    """Messages waiting per queue, being read, and quarantined, under REWARDS_BROKER_FOLDER."""
    def names(sub: str) -> list[str]:
        folder = broker_folder / sub
        return os.listdir(folder) if folder.is_dir() else []

    queued = Counter(queue for queue in map(queue_of, names("queue")) if queue is not None)
    return FolderCounts(dict(queued), len(names("claimed")), len(names("quarantine")))


class Channel(filesystem.Channel):
    """Atomic puts, claimed gets and a quarantine for unreadable files."""

    def _put(self, queue, payload, **kwargs):
        try:
            write_atomically(self.data_folder_out, message_name(queue), dumps(payload).encode())
        except OSError as error:
            raise ChannelError(f"cannot add a message to {self.data_folder_out!r}: {error}") from error

    def _get(self, queue):
        listed = self._listed.setdefault(queue, deque())
        if not listed:
            self._list(queue, listed)
        while listed:
            payload = self._take(listed.popleft())
            if payload is not None:
                return payload
            if not listed:  # every listed file was taken by another consumer or quarantined
                self._list(queue, listed)
        raise Empty()

    def _list(self, queue: str, into: deque) -> None:
        # One listing serves many gets: re-listing a folder of thousands of
        # files for every message would make draining quadratic.
        names = sorted(name for name in os.listdir(self.data_folder_in) if queue_of(name) == queue)
        into.extend(names)

    def _take(self, filename: str) -> dict | None:
        """The message in `filename`, or None if another consumer took it or it was quarantined."""
        claimed = os.path.join(self.claim_folder, filename)
        try:
            os.rename(os.path.join(self.data_folder_in, filename), claimed)
        except FileNotFoundError:
            return None
        try:
            with open(claimed, "rb") as file:
                data = file.read()
        except OSError as error:
            raise ChannelError(f"cannot read claimed message {claimed!r}: {error}") from error
        try:
            payload = loads(data.decode("utf-8"))
            if not isinstance(payload, dict):
                raise ValueError(f"a message is a JSON object, not {type(payload).__name__}")
        except ValueError as error:  # UnicodeDecodeError and JSONDecodeError included
            self._quarantine(claimed, filename, len(data), error)
            return None
        os.unlink(claimed)
        return payload

    def _quarantine(self, claimed: str, filename: str, size_bytes: int, error: Exception) -> None:
        kept = os.path.join(self.quarantine_folder, filename)
        os.replace(claimed, kept)
        log_event(logger, logging.ERROR, "broker.quarantined", path=kept, size_bytes=size_bytes,
                  error=f"{type(error).__name__}: {error}")

    @cached_property
    def _listed(self) -> dict[str, deque]:
        return {}

    @cached_property
    def data_folder_in(self) -> str:
        return self._folder("data_folder_in", "data_in")

    @cached_property
    def data_folder_out(self) -> str:
        return self._folder("data_folder_out", "data_out")

    @cached_property
    def claim_folder(self) -> str:
        return self._folder("claim_folder", "claimed")

    @cached_property
    def quarantine_folder(self) -> str:
        return self._folder("quarantine_folder", "quarantine")

    def _folder(self, option: str, default_name: str) -> str:
        """The folder an option names, created if missing; by default next to the queue folder.

        The claim rename must stay on one file system to be atomic, so the
        claim and quarantine folders default to siblings of the queue folder.
        """
        folder = self.transport_options.get(option)
        if not folder:
            parent = "." if option.startswith("data_") else os.path.dirname(os.path.abspath(self.data_folder_in))
            folder = os.path.join(parent, default_name)
        os.makedirs(folder, exist_ok=True)
        return folder


def stamp_arrival(message: dict, queue: str) -> None:
    """Record in a raw message the contract queue it was taken from, replacing what the producer wrote."""
    if queue not in contract.QUEUES:
        return  # Celery's own queues (remote control replies) keep their routing
    properties = message.get("properties") if isinstance(message, dict) else None
    if not isinstance(properties, dict):
        return  # not a kombu message; kombu refuses it on its own
    delivery_info = properties.get("delivery_info")
    if not isinstance(delivery_info, dict):
        delivery_info = properties["delivery_info"] = {}
    # Every contract queue is bound to an exchange of its own name under its
    # own name (rewards.contract.kombu_queues): the route that reaches it.
    delivery_info.update(exchange=queue, routing_key=queue)


class ArrivalStamped:
    """A virtual transport whose deliveries carry the queue they were consumed from."""

    def _deliver(self, message, queue):
        stamp_arrival(message, queue)
        super()._deliver(message, queue)


class Transport(ArrivalStamped, filesystem.Transport):
    Channel = Channel
    # Shared by every connection in the process, as in kombu's filesystem transport.
    global_state = filesystem.Transport.global_state


class KeepsBrokerAddress:
    """A Redis channel that can still reach its broker after its connection was torn down.

    When a worker loses the broker (a Redis restart), Celery's consumer
    collects the broken connection: kombu closes its channels, then detaches
    the transport from the connection (`transport.client = None`), then closes
    the connection again. A channel whose first close stopped early (a BRPOP
    in flight fails on the dead socket) is really closed only on that second
    pass, and closing it puts back the messages it holds unacknowledged
    (`restore_unacked`). Its pools were dropped by then, so kombu builds a new
    one from `transport.client`, which is now None: `AttributeError:
    'NoneType' object has no attribute 'hostname'` in `_connparams`, not a
    connection error, so it escapes Celery's reconnect and the worker exits
    (kombu issues 582 and 970; unfixed through kombu 5.7). A late ack of a
    job that was running at the restart meets the same missing address.

    It is guarded here, where the pool is built, rather than by swallowing
    the error around the close: the restore then really runs. If Redis is
    back it pushes the messages onto their queues at once; if it is still
    down it fails with a connection error, which Celery's reconnect handles,
    and the messages stay in the `unacked` hash, where the visibility timeout
    hands them out again. Either way none is lost.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The kombu Connection this channel was opened for: its address,
        # credentials and TLS options outlive the transport's link to it.
        self._broker_connection = self.connection.client

    def _get_pool(self, asynchronous=False):
        transport = self.connection
        if transport.client is not None:
            return super()._get_pool(asynchronous)
        # kombu reads the address from transport.client while it builds the
        # pool (and Sentinel's from its `alt` URLs too); lend it the address
        # for that moment only. The consumer runs in one thread, so no other
        # code sees the loan.
        transport.client = self._broker_connection
        try:
            return super()._get_pool(asynchronous)
        finally:
            transport.client = None


class RedisChannel(KeepsBrokerAddress, kombu_redis.Channel):
    pass


class SentinelChannel(KeepsBrokerAddress, kombu_redis.SentinelChannel):
    pass


class RedisTransport(ArrivalStamped, kombu_redis.Transport):
    Channel = RedisChannel


class SentinelTransport(ArrivalStamped, kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def install() -> None:
    """Serve the Redis URL schemes with the arrival-stamping transports in this process (workers call it)."""
    TRANSPORT_ALIASES.update(
        redis=f"{__name__}:RedisTransport",
        rediss=f"{__name__}:RedisTransport",
        sentinel=f"{__name__}:SentinelTransport",
    )

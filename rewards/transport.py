"""The embedded broker: kombu's `filesystem://` transport, made safe to share between processes.

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
from kombu.transport import filesystem
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

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


class Transport(filesystem.Transport):
    Channel = Channel
    # Shared by every connection in the process, as in kombu's filesystem transport.
    global_state = filesystem.Transport.global_state

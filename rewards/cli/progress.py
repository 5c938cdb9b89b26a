"""The demo's progress bar and the watch that keeps it from ever waiting silently.

Every wait for a job checks that the worker process still runs and that some
job finished recently; either failing raises `DemoStalled` with what an
operator needs: the oldest pending job, the broker's folder counts and the
tail of the worker's output.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewards.transport import folder_counts

# The rate shown is over this recent window, so a stall shows as 0/s at once.
RATE_WINDOW_S = 5.0


class DemoStalled(Exception):
    """The demo cannot finish: its worker exited, or no job finished for too long."""


@dataclass
class WorkerWatch:
    """The demo's worker process, where its output goes, and the embedded broker's folder (if any)."""

    process: subprocess.Popen
    log_path: Path
    broker_folder: Path | None

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def broker_state(self) -> str:
        if self.broker_folder is None:
            return "the broker is not the embedded one; inspect its queues with `celery -A workers inspect`"
        counts = folder_counts(self.broker_folder)
        queued = ", ".join(f"{queue} {count}" for queue, count in sorted(counts.queued.items())) or "none"
        return (f"broker folder {self.broker_folder}: queued {queued}; being read {counts.claimed}; "
                f"quarantined {counts.quarantined}")


def _ready(sent: Any) -> bool:
    try:
        return sent.ready()
    except ValueError:
        # The file result store writes a result in place: a read that races
        # the write sees part of it. The next poll reads it whole.
        return False


class Progress:
    """`[######....] 1,234/6,000 jobs  310/s`, redrawn on one line; a line every 2 s when not a terminal."""

    def __init__(self, stream=sys.stderr, *, watch: WorkerWatch | None = None, stall_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.watch = watch
        self.stall_s = stall_s
        self.clock = clock
        self.enqueued = 0
        self.done = 0
        self.last_done_at = clock()
        self.last_drawn = 0.0
        self.recent: deque[tuple[float, int]] = deque([(self.last_done_at, 0)])
        self.tty = stream.isatty()

    def wait_for(self, sent: Any, label: str) -> None:
        """Wait until `sent` has a result; DemoStalled if the worker died or nothing finishes."""
        while not _ready(sent):
            self.check(label, sent.id)
            self.show()
            time.sleep(0.02)

    def completed(self) -> None:
        self.done += 1
        self.last_done_at = self.clock()

    def check(self, label: str, job_id: str) -> None:
        if self.watch is not None and self.watch.process.poll() is not None:
            raise DemoStalled(f"the worker exited with code {self.watch.process.returncode} while "
                              f"{self.enqueued - self.done:,} job(s) were pending, the oldest {label} "
                              f"(job {job_id})")
        quiet_s = self.clock() - self.last_done_at
        if quiet_s > self.stall_s:
            where = f"; {self.watch.broker_state()}" if self.watch is not None else ""
            raise DemoStalled(f"no job finished for {quiet_s:.0f} s (limit {self.stall_s:.0f} s); "
                              f"{self.enqueued - self.done:,} pending, the oldest {label} (job {job_id}){where}")

    def rate_per_s(self) -> float:
        """Jobs finished per second over the last RATE_WINDOW_S."""
        now = self.clock()
        self.recent.append((now, self.done))
        while len(self.recent) > 2 and now - self.recent[1][0] >= RATE_WINDOW_S:
            self.recent.popleft()
        since, done_then = self.recent[0]
        return (self.done - done_then) / max(now - since, 1e-6)

    def show(self) -> None:
        now = self.clock()
        every_s = 0.1 if self.tty else 2.0
        if now - self.last_drawn < every_s:
            return
        self.last_drawn = now
        filled = int(30 * self.done / max(self.enqueued, 1))
        line = (f"[{'#' * filled}{'.' * (30 - filled)}] {self.done:,}/{self.enqueued:,} jobs  "
                f"{self.rate_per_s():,.0f}/s")
        print(f"\r{line}" if self.tty else line, end="" if self.tty else "\n", file=self.stream, flush=True)

    def finish(self) -> None:
        if self.tty:
            print(file=self.stream)

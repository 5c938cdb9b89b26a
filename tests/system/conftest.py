"""System tests: real `celery -A workers worker` processes, started, killed and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rewards import db
from tests.integration.conftest import flush_redis_test_databases, truncate_tables
from tests.invariants import assert_invariants

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_state() -> Iterator[None]:
    flush_redis_test_databases()
    with db.transaction() as conn:
        truncate_tables(conn)
    yield
    with db.get_engine().connect() as conn:
        assert_invariants(conn)


def start_worker_process(name: str, queues: str, extra_env: dict[str, str]) -> subprocess.Popen:
    """A worker in its own process group, so a test can kill it and every pool child at once."""
    command = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queues,
               "-c", "2", "-P", "prefork", "-n", f"{name}@%h", "--loglevel=WARNING"]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=os.environ | extra_env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL, timeout_s: float = 30) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout_s)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")

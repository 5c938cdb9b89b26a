"""Migrations follow a multi-host URL past a host that does not answer, as the workers do.

The first host accepts the TCP connection and then says nothing, as a hung
or half-failed primary does: without a per-host connect_timeout libpq waits
on it for ever. With REWARDS_CONNECT_TIMEOUT_S it gives up on that host and
migrates through the next one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import make_url

from tests.support.processes import REPO_ROOT

# Far above the 1 s connect timeout the test sets; only a migration that waits on the silent host reaches it.
HANG_S = 60


@pytest.fixture
def silent_host() -> Iterator[str]:
    """host:port on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stopping.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stopping.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_migrations_skip_a_host_that_does_not_answer(silent_host):
    owner = make_url(os.environ["REWARDS_TEST_ADMIN_DATABASE_URL"])
    hosts = [silent_host, f"{owner.host}:{owner.port or 5432}"]
    url = owner.set(host=None, port=None, query={"host": hosts}).render_as_string(hide_password=False)
    migrated = subprocess.run([sys.executable, "-m", "rewards.cli", "db", "upgrade"], cwd=REPO_ROOT,
                              env=os.environ | {"REWARDS_DATABASE_URL": url, "REWARDS_CONNECT_TIMEOUT_S": "1"},
                              capture_output=True, text=True, timeout=HANG_S)
    assert migrated.returncode == 0, migrated.stderr
    assert "database at head" in migrated.stdout

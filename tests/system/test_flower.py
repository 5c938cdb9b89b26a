"""Flower watching a real worker process: authentication, the worker online, check-ins with their states.

The module starts its own redis-server on a free port as the broker (with
a password and appendonly, as in docker-compose.yml), a `celery -A workers
worker` process, and a `celery -A workers flower` process with the options
docker-compose.yml gives it and FLOWER_BASIC_AUTH from the environment, all
against the suite's PostgreSQL. A private broker, because the
integration tier's embedded worker (a session fixture) keeps consuming the
suite's queues until the session ends and would take the jobs that these
tests expect their own worker process to run, and because a suite running
side by side must not see this worker in its Flower.

The check-ins use partner ids no other test uses; their rows are checked
against the invariants and deleted when the module ends. Every wait is
bounded, and every process is stopped in fixture teardown.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text

from rewards import contract, db
from rewards.client import RewardsClient
from chaos.servers import free_port
from tests.support.database import admin_transaction
from tests.support.invariants import assert_invariants

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
FLOWER_USER, FLOWER_PASSWORD = "operator", "flower-test-password"
REDIS_PASSWORD = "redis-test-password"
WORKER_NAME = "flower-test@localhost"
# Far above the ids other tests use, so cleaning up here deletes nothing of theirs.
PARTNER_IDS = (7_700_000_001, 7_700_000_002, 7_700_000_003)
START_TIMEOUT_S = 60
RESULT_TIMEOUT_S = 60
BROWSER_TIMEOUT_S = 90



def wait_until(condition: Callable[[], Any], timeout_s: float, what: str,
               logs: tuple[Path, ...] = ()) -> Any:
    """Poll until condition() returns something truthy; fail with the processes' logs after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs if log.exists())
            raise AssertionError(f"{what}: not within {timeout_s:g} s\n{tails}")
        time.sleep(0.25)


@dataclass
class Process:
    """A process started by these tests, in its own process group, logging to a file."""

    popen: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, argv: list[str], env: dict[str, str], log: Path) -> Process:
        with log.open("wb") as output:
            popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return cls(popen, log)

    def stop(self) -> None:
        # The group holds the worker's pool children too: stop them with it.
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)


def http_get(url: str, credentials: tuple[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def compose_flower_options() -> list[str]:
    """The options docker-compose.yml gives Flower, less where it listens."""
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["flower"]["command"]
    assert command[:4] == ["celery", "-A", "workers", "flower"], command
    return [option for option in command[4:] if not option.startswith(("--address=", "--port="))]


def flower_argv(port: int) -> list[str]:
    """Flower as compose runs it, on loopback and a free port; authentication comes from the environment."""
    return [sys.executable, "-m", "celery", "-A", "workers", "flower",
            *compose_flower_options(), "--address=127.0.0.1", f"--port={port}"]


@dataclass
class Stack:
    broker_url: str
    backend_url: str
    env: dict[str, str]
    flower_url: str
    logs: tuple[Path, ...]

    def api(self, path: str) -> Any:
        status, body = http_get(self.flower_url + path, (FLOWER_USER, FLOWER_PASSWORD))
        assert status == 200, f"GET {path} with credentials: {status} {body[:200]!r}"
        return json.loads(body)


@pytest.fixture(scope="module")
def broker_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """The environment of this module's processes: the suite's database, a private Redis.

    Redis runs as in docker-compose.yml: with a password and appendonly.
    """
    directory = tmp_path_factory.mktemp("redis")
    port = free_port()
    redis_server = shutil.which("redis-server")
    assert redis_server, "redis-server is missing: `make services` installs it"
    redis = Process.start([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "yes", "--requirepass", REDIS_PASSWORD,
                           "--dir", str(directory)], dict(os.environ),
                          directory / "redis.log")
    try:
        wait_until(lambda: _redis_answers(port), START_TIMEOUT_S, "private redis-server", (redis.log,))
        # Flower settings from the developer's shell must not change what these tests see.
        env = {name: value for name, value in os.environ.items()
               if not name.startswith("FLOWER_") and name != "REWARDS_FLOWER_UNSAFE_NO_AUTH"}
        env.update(CELERY_BROKER_URL=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0",
                   CELERY_RESULT_BACKEND=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/1",
                   PYTHONUNBUFFERED="1")
        yield env
    finally:
        redis.stop()


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(f"AUTH {REDIS_PASSWORD}\r\nPING\r\n".encode())
            time.sleep(0.05)
            return b"+PONG" in connection.recv(64)
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack(broker_env, tmp_path_factory) -> Iterator[Stack]:
    """A worker process on every queue and Flower with basic auth, both on the private broker."""
    directory = tmp_path_factory.mktemp("stack")
    port = free_port()
    worker = Process.start([sys.executable, "-m", "celery", "-A", "workers", "worker",
                            "-Q", ",".join(contract.QUEUES), "-c", "2", "--loglevel=INFO",
                            "-n", WORKER_NAME], broker_env, directory / "worker.log")
    flower_env = dict(broker_env, FLOWER_BASIC_AUTH=f"{FLOWER_USER}:{FLOWER_PASSWORD}")
    flower = Process.start(flower_argv(port), flower_env, directory / "flower.log")
    logs = (worker.log, flower.log)
    try:
        flower_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_get(flower_url + "/healthcheck")[0] == 200, START_TIMEOUT_S,
                   "Flower answering /healthcheck", logs)
        yield Stack(broker_env["CELERY_BROKER_URL"], broker_env["CELERY_RESULT_BACKEND"], broker_env,
                    flower_url, logs)
    finally:
        flower.stop()
        worker.stop()


def _delete_partners(partner_ids: tuple[int, ...]) -> None:
    # Every table with a partner_id column, found in the schema, so a table
    # added later is cleaned too; then the partners themselves. As the owner:
    # no job deletes ledger, audit or check-in rows.
    with admin_transaction() as connection:
        tables = connection.execute(text(
            "SELECT table_name FROM information_schema.columns "
            "WHERE column_name = 'partner_id' AND table_schema = current_schema()")).scalars().all()
        for table in tables:
            connection.execute(text(f'DELETE FROM "{table}" WHERE partner_id = ANY(:ids)'),
                               {"ids": list(partner_ids)})
        connection.execute(text("DELETE FROM partner WHERE id = ANY(:ids)"), {"ids": list(partner_ids)})


@pytest.fixture(scope="module")
def checkins(stack) -> Iterator[dict[str, dict]]:
    """Three check-ins applied by the worker process: {job id: result}."""
    _delete_partners(PARTNER_IDS)
    # Celery reads CELERY_BROKER_URL and CELERY_RESULT_BACKEND from the
    # environment before the URLs given to the app, so the client points at
    # the private broker only while these name it.
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("CELERY_BROKER_URL", stack.broker_url)
        environment.setenv("CELERY_RESULT_BACKEND", stack.backend_url)
        client = RewardsClient(stack.broker_url, stack.backend_url)
        try:
            sent = [client.checkin(partner_id) for partner_id in PARTNER_IDS]
            results = {job.id: job.get(timeout=RESULT_TIMEOUT_S) for job in sent}
        finally:
            client.close()
    assert [result["status"] for result in results.values()] == ["applied"] * len(PARTNER_IDS)
    yield results
    with db.get_engine().connect() as connection:
        assert_invariants(connection)
    _delete_partners(PARTNER_IDS)


def tasks_in_flower(stack: Stack, job_ids) -> dict[str, dict]:
    """Flower's view of these jobs once it has seen each one succeed (task events arrive after the result)."""
    def all_succeeded():
        tasks = stack.api("/api/tasks")
        seen = {job_id: tasks[job_id] for job_id in job_ids if job_id in tasks}
        return seen if len(seen) == len(job_ids) and all(
            task["state"] == "SUCCESS" for task in seen.values()) else None

    return wait_until(all_succeeded, RESULT_TIMEOUT_S, "Flower listing every check-in as SUCCESS", stack.logs)


def test_flower_shows_the_worker_online_on_every_queue(stack):
    def worker_listed():
        return stack.api("/api/workers?refresh=1").get(WORKER_NAME)

    def worker_alive_by_events():
        return stack.api("/api/workers?status=true").get(WORKER_NAME) is True

    # refresh=1 asks the workers over the broker (inspect); status=true is
    # what the workers' own events (heartbeats) told Flower.
    worker = wait_until(worker_listed, START_TIMEOUT_S, f"{WORKER_NAME} in /api/workers", stack.logs)
    assert {queue["name"] for queue in worker["active_queues"]} == set(contract.QUEUES)
    assert worker["stats"]["pool"]["max-concurrency"] == 2
    wait_until(worker_alive_by_events, START_TIMEOUT_S, f"{WORKER_NAME} alive by its events", stack.logs)


def test_flower_lists_each_checkin_with_its_state_worker_and_result(stack, checkins):
    tasks = tasks_in_flower(stack, list(checkins))
    for job_id, task in tasks.items():
        assert task["name"] == contract.CHECKIN
        assert task["state"] == "SUCCESS"
        assert task["worker"] == WORKER_NAME
        assert "'status': 'applied'" in task["result"]
        assert f"'partner_id': {checkins[job_id]['partner_id']}" in task["kwargs"]


@pytest.mark.parametrize("credentials", [None, (FLOWER_USER, "wrong-password"), ("intruder", FLOWER_PASSWORD)])
def test_flower_answers_401_to_a_request_without_the_right_credentials(stack, credentials):
    for path in ("/api/workers", "/api/tasks", "/tasks", "/"):
        status, _ = http_get(stack.flower_url + path, credentials)
        assert status == 401, f"GET {path} with {credentials}: {status}"


def test_flower_serves_metrics_and_healthcheck_without_authentication(stack, checkins):
    # A fact of Flower 2.2 the deployment has to live with: this is why
    # docker-compose.yml publishes Flower on 127.0.0.1 only. If this test
    # starts failing, Flower protects them now: update docs/monitoring.md and compose.
    health_status, health_body = http_get(stack.flower_url + "/healthcheck")
    metrics_status, metrics_body = http_get(stack.flower_url + "/metrics")
    assert (health_status, health_body) == (200, b"OK")
    assert metrics_status == 200 and b"flower_events_total" in metrics_body


def test_flower_refuses_to_start_without_authentication_and_names_what_to_set(broker_env):
    finished = subprocess.run(flower_argv(free_port()), cwd=ROOT, env=broker_env, capture_output=True,
                              text=True, timeout=START_TIMEOUT_S)
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert "Flower refuses to start without authentication" in finished.stderr
    assert "FLOWER_BASIC_AUTH=user:password" in finished.stderr
    assert "REWARDS_FLOWER_UNSAFE_NO_AUTH=1" in finished.stderr


def test_flower_refuses_a_basic_auth_setting_that_is_not_user_and_password(broker_env):
    env = dict(broker_env, FLOWER_BASIC_AUTH="operator-without-password")
    finished = subprocess.run(flower_argv(free_port()), cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=START_TIMEOUT_S)
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert "FLOWER_BASIC_AUTH (--basic-auth) must be user:password" in finished.stderr
    assert "operator-without-password" not in finished.stderr


def test_flower_starts_without_authentication_only_with_the_explicit_opt_out(broker_env, tmp_path):
    port = free_port()
    env = dict(broker_env, REWARDS_FLOWER_UNSAFE_NO_AUTH="1")
    flower = Process.start(flower_argv(port), env, tmp_path / "flower.log")
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthcheck")[0] == 200, START_TIMEOUT_S,
                   "Flower started with the opt-out", (flower.log,))
        assert http_get(f"http://127.0.0.1:{port}/")[0] == 200
    finally:
        flower.stop()
    assert "Flower runs WITHOUT authentication (REWARDS_FLOWER_UNSAFE_NO_AUTH=1)" in flower.log.read_text()


def chromium(*arguments: str, profile: Path) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium")
    assert browser, "chromium is missing: `make test` installs it (make browser)"
    profile.mkdir()
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--window-size=1400,900",
         # The task table is filled by JavaScript from Flower's datatable
         # endpoint; virtual time lets it finish before the DOM is taken.
         "--virtual-time-budget=10000", *arguments],
        capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)


def assert_is_screenshot(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert path.stat().st_size > 20_000, f"{path}: a blank page compresses to far less than a table"


def test_the_dashboard_in_a_browser_shows_the_worker_online_and_each_checkin(stack, checkins, tmp_path):
    tasks_in_flower(stack, list(checkins))
    # Credentials in the URL: the browser answers Flower's basic-auth challenge with them.
    dashboard = stack.flower_url.replace("http://", f"http://{FLOWER_USER}:{FLOWER_PASSWORD}@")

    workers_page = chromium("--dump-dom", f"{dashboard}/workers", profile=tmp_path / "profile-workers")
    assert workers_page.returncode == 0, workers_page.stderr[-2000:]
    worker_row = workers_page.stdout.partition(f'title="{WORKER_NAME}"')[2].partition("</tr>")[0]
    assert '<span class="badge bg-success">Online</span>' in worker_row, worker_row or workers_page.stdout[-3000:]
    assert f'state=SUCCESS">{len(checkins)}</a>' in worker_row, worker_row

    tasks_page = chromium("--dump-dom", f"{dashboard}/tasks", profile=tmp_path / "profile-tasks")
    assert tasks_page.returncode == 0, tasks_page.stderr[-2000:]
    rows = tasks_page.stdout.split("<tr ")
    for job_id in checkins:
        row = next((row for row in rows if row.startswith(f'id="{job_id}"')), None)
        assert row is not None, f"no row for job {job_id} in the rendered task table"
        assert contract.CHECKIN in row and WORKER_NAME in row and "SUCCESS" in row, row

    # Screenshots for a person to look at (kept under the test's tmp_path).
    for page in ("workers", "tasks"):
        screenshot = tmp_path / f"flower-{page}.png"
        shot = chromium(f"--screenshot={screenshot}", f"{dashboard}/{page}",
                        profile=tmp_path / f"profile-{page}-screenshot")
        assert shot.returncode == 0, shot.stderr[-2000:]
        assert_is_screenshot(screenshot)

"""Worker processes for system tests: started in their own group, watched, killed, waited on.

A worker's output goes to a log file; every wait fails at once, showing the
log's tail, if the worker died, so a test can never pass or time out quietly
because its worker never ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def kill(self, sig: int = signal.SIGKILL, timeout_s: float = 30) -> None:
        """Signal the worker and every pool child at once, and wait for the group to end."""
        if self.alive():
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout_s)


def start_worker_process(name: str, queues: str, extra_env: dict[str, str], log_dir: Path,
                         options: tuple[str, ...] = ()) -> WorkerProcess:
    """A prefork ×2 worker in its own process group, logging to `log_dir/<name>.log`.

    `options` are further `celery worker` options, e.g. `--prefetch-multiplier=1`.
    """
    command = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queues,
               "-c", "2", "-P", "prefork", "-n", f"{name}@%h", "--loglevel=WARNING", *options]
    return start_process(name, command, os.environ | extra_env, log_dir)


def start_process(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> WorkerProcess:
    """`command` in its own process group, with `env`, logging to `log_dir/<name>.log`."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, start_new_session=True,
                                   stdout=log, stderr=subprocess.STDOUT)
    return WorkerProcess(name, process, log_path)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str,
               workers: tuple[WorkerProcess, ...] = (), progress: Callable[[], str] | None = None) -> None:
    """Poll `condition`; fail at once if a worker died, or after `timeout_s`, with the workers' logs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        dead = [worker for worker in workers if not worker.alive()]
        if dead:
            raise AssertionError(f"waiting for {what}: worker {dead[0].name} exited with "
                                 f"{dead[0].process.returncode}:\n{dead[0].log_tail()}")
        time.sleep(0.2)
    logs = "\n".join(f"--- {worker.name}:\n{worker.log_tail()}" for worker in workers)
    state = f" ({progress()})" if progress else ""
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}{state}\n{logs}")


def send_jobs(jobs: list[tuple[str, dict]], env: dict[str, str], job_ids: list[str] | None = None) -> list[str]:
    """Enqueue jobs, in this order, from a producer process of its own; returns the job ids.

    `job_ids` sends them again under the ids they were first sent with (the
    producer's recovery for a message the broker lost).

    Celery prefers CELERY_BROKER_URL in the environment to any URL given in
    code, and this process's other workers read that same environment: a
    separate producer is how a test sends to a broker only its own workers use.
    """
    script = ("import json, sys\n"
              "from rewards.client import RewardsClient\n"
              "client = RewardsClient()\n"
              "jobs, job_ids = json.load(sys.stdin)\n"
              "ids = [client.send(name, job_id=job_id, **kwargs).id\n"
              "       for (name, kwargs), job_id in zip(jobs, job_ids or [None] * len(jobs))]\n"
              "client.close()\n"
              "json.dump(ids, sys.stdout)\n")
    sent = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=os.environ | env,
                          input=json.dumps([jobs, job_ids]), capture_output=True, text=True, timeout=300)
    assert sent.returncode == 0, f"the producer failed:\n{sent.stderr}"
    return json.loads(sent.stdout)

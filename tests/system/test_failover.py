"""The short failover seed: the PostgreSQL primary's machine is lost while jobs flow, and nothing is lost.

`python -m chaos --profile failover_short` starts three machines of its own
(etcd, Patroni and PostgreSQL each, chaos/ha.py) with synchronous
replication, a RabbitMQ vhost and a Redis of its own and two workers on the
multi-host URL; it SIGKILLs every process of the primary's machine, Patroni
promotes the synchronous standby, and the old primary comes back as a
replica of the new one (the run fails if it takes the lead back). Its table
and timeline are shown on failure.
"""

import re
import subprocess
import sys

import pytest

from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.system


def _figure(report: str, name: str) -> str:
    """The value of the table row labelled `name` (label and value are two or more spaces apart)."""
    rows = [re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in report.splitlines()]
    values = [row[1] for row in rows if len(row) == 2 and row[0] == name]
    assert len(values) == 1, f"no single row {name!r} in:\n{report}"
    return values[0]


def test_losing_the_primary_machine_switches_to_a_standby_and_loses_no_acknowledged_job():
    finished = subprocess.run([sys.executable, "-m", "chaos", "--broker", "amqp", "--profile", "failover_short",
                               "--seed", "1"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    report = finished.stdout + finished.stderr
    assert finished.returncode == 0, report
    for figure in ("lost", "double-credited", "wrongly rejected", "falsely failed", "stuck",
                   "partners differing from the model"):
        assert _figure(report, figure) == "0", report
    assert _figure(report, "workers that exited on their own (restarted)") == "0", report
    assert _figure(report, "faults injected while jobs flowed") == "1 of 1", report
    # The switch happened (another machine became the primary) and the workers felt it (they retried).
    switch = _figure(report, "fault pg_primary_kill")
    assert " took over from " in switch and "'event=job.retry'" in switch, report
    # The old primary came back as a streaming replica, under the machine promoted in its absence.
    assert any(" back, " in line and "leader running" in line for line in report.splitlines()), report

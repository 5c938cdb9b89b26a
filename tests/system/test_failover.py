"""The short failover seed: the PostgreSQL primary's machine is lost, then the next primary hangs, then a
RabbitMQ node is lost; nothing is lost.

`python -m chaos --profile failover_short` starts servers of its own
(chaos/ha.py): three machines of etcd, Patroni and PostgreSQL each, with
synchronous replication; Redis under Sentinel; three RabbitMQ nodes in a
cluster, with the job queues as quorum queues and every client on a
failover URL; two workers on the multi-host URL and a reader on the
prefer-standby URL. It SIGKILLs every process of the PostgreSQL primary's
machine, then SIGSTOPs every process of the next primary's, then SIGKILLs
the RabbitMQ node that leads the check-ins queue (every client is
connected to it). Each time Patroni promotes the synchronous standby or
another node takes the lead, and the lost one comes back (an old primary
as a replica of the new one: the run fails if it takes the lead back). Its
table and timeline are shown on failure.
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


def test_losing_a_broker_node_or_the_primary_machine_switches_over_and_loses_no_acknowledged_job():
    finished = subprocess.run([sys.executable, "-m", "chaos", "--broker", "amqp", "--profile", "failover_short",
                               "--seed", "1"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    report = finished.stdout + finished.stderr
    assert finished.returncode == 0, report
    for figure in ("lost", "double-credited", "wrongly rejected", "falsely failed", "stuck",
                   "partners differing from the model"):
        assert _figure(report, figure) == "0", report
    assert _figure(report, "workers that exited on their own (restarted)") == "0", report
    assert _figure(report, "faults injected while jobs flowed") == "3 of 3", report
    # Another node took the lead of the check-ins queue, and every worker lost its connection and reconnected.
    node_loss = _figure(report, "fault rabbit_node_kill")
    assert " took the lead of checkins " in node_loss, report
    assert "workers that reconnected to another node: chaos-a, chaos-b;" in node_loss, report
    # Each switch happened (another machine became the primary) and the workers felt it (they retried).
    for fault in ("pg_primary_kill", "pg_primary_hang"):
        switch = _figure(report, f"fault {fault}")
        assert " took over from " in switch and "'event=job.retry'" in switch, report
    # The read side (prefer-standby) kept answering from a standby while each primary was away,
    # the hung one included: it had been the standby the reader used before its promotion.
    reads = re.fullmatch(r"([\d,]+) answered \(([\d,]+) by a standby\), (\d+) failed; "
                         r"answered while the primary was away: (\d+), (\d+)",
                         _figure(report, "reads through the read URL"))
    assert reads, report
    assert int(reads[2].replace(",", "")) > 0 and int(reads[4]) > 0 and int(reads[5]) > 0, report
    # The old primary came back as a streaming replica, under the machine promoted in its absence.
    assert any(" back, " in line and "leader running" in line for line in report.splitlines()), report

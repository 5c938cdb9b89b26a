"""The metrics, the alert rules and the dashboard, against a real Prometheus scraping a real worker and beat.

Debian's `prometheus` scrapes a prefork worker and beat every second, with
the basic auth they ask for, and evaluates rewards/metrics/alerts.yml. A
small run goes through the worker: check-ins alone and in a batch (with
repeats), a claim too early, a bad payload, an operator's deduction and a
check-in held up by a row lock until it retries. The test then asks
Prometheus's HTTP API for the figures the run implies, read back from
PostgreSQL where they are XP: applied check-ins, duplicates, rejections by
reason, XP by entry type, the retry and its cause, job latencies, the state
beat reads (queues, failures, maintenance runs). A balance edited by hand
and a full reconcile must then fire RewardsReconcileMismatch, and every
query of the dashboard (rewards/metrics/dashboard.json) must return data.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from rewards import contract
from tests.support.database import admin_transaction, count
from tests.support.jobs import at
from chaos.servers import free_port
from tests.support.processes import (
    REPO_ROOT,
    WorkerProcess,
    send_jobs,
    start_process,
    start_worker_process,
    wait_until,
)

pytestmark = pytest.mark.system

METRICS_DIR = REPO_ROOT / "rewards" / "metrics"
PASSWORD = "scrape-secret"
SINGLE = range(8801, 8821)
BATCHED = range(8821, 8824)
HELD = 8830
STARTUP_S = 60
SCRAPED_S = 30



@dataclass
class Prometheus:
    url: str
    process: WorkerProcess
    worker_metrics_url: str

    def query(self, promql: str) -> list[dict]:
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(address, timeout=5) as response:
            answer = json.load(response)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The query's single value, None when it has no series."""
        result = self.query(promql)
        assert len(result) <= 1, f"{promql} has {len(result)} series, one expected: {result}"
        return float(result[0]["value"][1]) if result else None

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:
            return json.load(response)["data"]



def prometheus_config(tmp_path: Path, worker_port: int, beat_port: int) -> Path:
    password_file = tmp_path / "metrics_password"
    password_file.write_text(PASSWORD)
    auth = {"username": "prometheus", "password_file": str(password_file)}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(METRICS_DIR / "alerts.yml")],
        "scrape_configs": [
            {"job_name": "rewards-worker", "basic_auth": auth,
             "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
            {"job_name": "rewards-beat", "basic_auth": auth,
             "static_configs": [{"targets": [f"127.0.0.1:{beat_port}"]}]},
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@pytest.fixture
def stack(system_broker_url, clean_state, tmp_path) -> Iterator[tuple[Prometheus, dict[str, str], list]]:
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus is not installed: run `make services`"
    worker_port, beat_port, web_port = free_port(), free_port(), free_port()
    env = {"CELERY_BROKER_URL": system_broker_url, "REWARDS_METRICS_BASIC_AUTH": f"prometheus:{PASSWORD}",
           # A check-in held up by the test's row lock retries at once.
           "REWARDS_LOCK_TIMEOUT_MS": "200",
           "REWARDS_RELAY_OUTBOX_EVERY_S": "1", "REWARDS_UPDATE_LEADERBOARDS_EVERY_S": "1"}
    processes = [
        start_process("prometheus", [binary, f"--config.file={prometheus_config(tmp_path, worker_port, beat_port)}",
                                     f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                     f"--web.listen-address=127.0.0.1:{web_port}", "--log.level=warn"],
                      dict(os.environ), tmp_path),
        start_worker_process("metrics-worker", ",".join(contract.QUEUES),
                             env | {"REWARDS_METRICS_PORT": str(worker_port)}, tmp_path),
        start_process("beat", [sys.executable, "-m", "celery", "-A", "workers", "beat", "--loglevel=INFO",
                               "--schedule", str(tmp_path / "beat-schedule")],
                      dict(os.environ) | env | {"REWARDS_METRICS_PORT": str(beat_port)}, tmp_path),
    ]
    prometheus = Prometheus(f"http://127.0.0.1:{web_port}", processes[0], f"http://127.0.0.1:{worker_port}/metrics")
    try:
        wait_until(lambda: _both_scraped(prometheus), STARTUP_S, "Prometheus to scrape the worker and beat",
                   tuple(processes))
        yield prometheus, env, processes
    finally:
        for process in processes:
            process.kill()


def _both_scraped(prometheus: Prometheus) -> bool:
    try:
        return prometheus.value('sum(up{job=~"rewards-worker|rewards-beat"})') == 2
    except OSError:
        return False  # not listening yet


def eventually(prometheus: Prometheus, promql: str, expected: float, processes) -> None:
    wait_until(lambda: prometheus.value(promql) == expected, SCRAPED_S, f"{promql} == {expected}", tuple(processes),
               progress=lambda: f"it is {prometheus.value(promql)}")


def the_run(env: dict[str, str]) -> None:
    today = at(0)
    jobs = [(contract.CHECKIN, {"partner_id": partner_id, "occurred_at": today}) for partner_id in SINGLE]
    # Three new partners and two repeats of check-ins already sent: duplicates.
    jobs.append((contract.CHECKIN_BATCH, {"checkins": [{"partner_id": p, "occurred_at": today}
                                                       for p in (*BATCHED, SINGLE[0], SINGLE[1])]}))
    jobs.append((contract.TASK_CLAIM, {"partner_id": SINGLE[0], "task_id": "invite_3_friends", "occurred_at": today}))
    jobs.append((contract.CHECKIN, {"partner_id": -1, "occurred_at": today}))
    jobs.append((contract.ADJUST, {"partner_id": SINGLE[0], "amount": -4, "reason": "chargeback",
                                   "request_id": "metrics-test-1"}))
    send_jobs(jobs, env)


def test_prometheus_sees_the_run_the_alerts_fire_and_every_dashboard_query_answers(stack):
    prometheus, env, processes = stack
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(prometheus.worker_metrics_url, timeout=5)
    refused.value.close()
    assert refused.value.code == 401, "a scrape without the basic auth must be refused"
    # The held partner exists (yesterday's check-in), then its row is locked
    # while today's check-in arrives, until Prometheus has seen the retry.
    send_jobs([(contract.CHECKIN, {"partner_id": HELD, "occurred_at": at(-1)})], env)
    wait_until(lambda: applied_checkins() == 1, SCRAPED_S, "the held partner's first check-in", tuple(processes))
    with admin_transaction() as conn:
        conn.execute(text("SELECT 1 FROM partner WHERE id = :id FOR UPDATE"), {"id": HELD})
        send_jobs([(contract.CHECKIN, {"partner_id": HELD, "occurred_at": at(0)})], env)
        wait_until(lambda: (prometheus.value('sum(rewards_job_retries_total{job_name="rewards.checkin"})') or 0) >= 1,
                   SCRAPED_S, "a retry of the held check-in", tuple(processes))
    the_run(env)
    # Every job message of the run done and scraped: the held partner's two, the
    # single check-ins, the batch, the claim, the bad payload and the deduction.
    eventually(prometheus, "sum(rewards_job_duration_seconds_count)", 2 + len(SINGLE) + 4, processes)
    expected_checkins = 2 + len(SINGLE) + len(BATCHED)
    assert applied_checkins() == expected_checkins

    outcome = 'sum(rewards_outcomes_total{{job_name="{job}", status="{status}", reason="{reason}"}})'
    assert prometheus.value(outcome.format(job=contract.CHECKIN, status="applied", reason="")) == expected_checkins
    assert prometheus.value(outcome.format(job=contract.CHECKIN, status="duplicate", reason="already_applied")) == 2
    assert prometheus.value(outcome.format(job=contract.CHECKIN, status="rejected", reason="invalid_payload")) == 1
    assert prometheus.value(outcome.format(job=contract.TASK_CLAIM, status="rejected", reason="not_started")) == 1
    assert prometheus.value(outcome.format(job=contract.ADJUST, status="applied", reason="")) == 1

    checkin_xp, deducted_xp = ledger_xp("checkin", positive=True), -ledger_xp("adjustment", positive=False)
    assert checkin_xp > 0 and deducted_xp == 4
    assert prometheus.value('sum(rewards_xp_granted_total{entry_type="checkin"})') == checkin_xp
    assert prometheus.value('sum(rewards_xp_deducted_total{entry_type="adjustment"})') == deducted_xp
    retry = prometheus.query('rewards_job_retries_total{job_name="rewards.checkin"}')
    assert [series["metric"]["error"] for series in retry] == ["OperationalError"]
    # Every job here came through rewards.client, which stamps when it sent it.
    assert prometheus.value("sum(rewards_job_latency_seconds_count)") == 2 + len(SINGLE) + 4

    eventually(prometheus, 'rewards_job_failures_unresolved{reason="invalid_payload"}', 1, processes)
    assert prometheus.value('sum(rewards_queue_messages{queue="checkins"})') == 0
    assert prometheus.value("min(rewards_state_source_up)") == 1
    relay_done = prometheus.value(
        'rewards_maintenance_last_done_timestamp_seconds{job_name="rewards.maintenance.relay_outbox"}')
    assert relay_done is not None and relay_done > 0

    rules = [rule for group in prometheus.get("/api/v1/rules")["groups"] for rule in group["rules"]]
    assert {rule["health"] for rule in rules} == {"ok"} and len(rules) >= 10

    mismatch_alert_fires_on_a_hand_edited_balance(prometheus, env, processes)
    every_dashboard_query_answers(prometheus)


def applied_checkins() -> int:
    with admin_transaction() as conn:
        return count(conn, "checkin")


def ledger_xp(entry_type: str, *, positive: bool) -> int:
    with admin_transaction() as conn:
        return conn.execute(text(f"SELECT COALESCE(SUM(amount), 0) FROM xp_ledger WHERE entry_type = :type "
                                 f"AND amount {'>' if positive else '<'} 0"), {"type": entry_type}).scalar_one()


def mismatch_alert_fires_on_a_hand_edited_balance(prometheus: Prometheus, env: dict[str, str], processes) -> None:
    firing = 'count(ALERTS{alertname="RewardsReconcileMismatch", alertstate="firing"})'
    assert prometheus.value(firing) is None
    with admin_transaction() as conn:
        conn.execute(text("UPDATE partner SET xp = xp + 1 WHERE id = :id"), {"id": SINGLE[5]})
    try:
        send_jobs([(contract.MAINTENANCE_RECONCILE, {"full": True})], env)
        eventually(prometheus, "sum(rewards_reconcile_mismatches_found_total)", 1, processes)
        eventually(prometheus, "rewards_reconcile_mismatches", 1, processes)
        eventually(prometheus, firing, 1, processes)
    finally:
        with admin_transaction() as conn:
            conn.execute(text("UPDATE partner SET xp = xp - 1 WHERE id = :id"), {"id": SINGLE[5]})


def every_dashboard_query_answers(prometheus: Prometheus) -> None:
    dashboard = json.loads((METRICS_DIR / "dashboard.json").read_text())
    unanswered = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            # Grafana's rate window; the whole run fits in five minutes.
            promql = target["expr"].replace("$__rate_interval", "5m")
            if not prometheus.query(promql):
                unanswered.append(f"{panel['title']!r}: {promql}")
    assert not unanswered, "dashboard queries without data:\n" + "\n".join(unanswered)

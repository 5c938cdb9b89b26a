"""What the workers count (rewards.metrics), on the embedded default: XP only once its transaction committed.

The jobs run through LedgerTask's own transaction handling on a SQLite file,
with the counters read from prometheus_client's registry, as /metrics would.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import exc, text

from rewards import contract, db
from rewards.contract.payloads import CheckinJob
from rewards.contract.results import Outcome
from rewards.ledger.checkins import apply_checkin
from rewards.metrics import count_job, xp_tally
from rewards.rules import Policy

START = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_tally_is_the_xp_of_the_ledger_rows_the_transaction_wrote(sqlite_engine):
    tallies = []
    for day in range(8):  # a week's bonus on day 7
        job = CheckinJob(partner_id=7, occurred_at=(START + timedelta(days=day)).isoformat())
        with xp_tally() as tally, sqlite_engine.begin() as conn:
            apply_checkin(conn, job, Policy(), now=START + timedelta(days=9), future_tolerance=timedelta(minutes=5))
        tallies.append(dict(tally))
    with sqlite_engine.connect() as conn:
        ledger = dict(conn.execute(text("SELECT entry_type, SUM(amount) FROM xp_ledger GROUP BY entry_type")).all())
    # Keyed by entry type and whether it credits.
    assert {entry: sum(amount for t in tallies for (kind, _), amount in t.items() if kind == entry)
            for entry in ledger} == ledger
    assert tallies[6] == {("checkin", True): 10, ("streak_bonus", True): 150}


@contextmanager
def commit_fails(engine) -> Iterator:
    """A transaction whose commit is lost: the body ran, the server never confirmed it."""
    with engine.begin() as conn:
        yield conn
        raise exc.OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))


def test_xp_of_a_job_whose_commit_fails_is_not_counted_and_is_once_it_commits(sqlite_engine, monkeypatch):
    from workers.checkin import checkin as checkin_task

    payload = {"partner_id": 8, "occurred_at": START.isoformat()}
    before = sample("rewards_xp_granted_total", entry_type="checkin")
    checkin_task.push_request(id="metrics-test", delivery_info={"exchange": contract.QUEUE_CHECKINS})
    try:
        monkeypatch.setattr(db, "transaction", lambda: commit_fails(sqlite_engine))
        with pytest.raises(exc.OperationalError):
            checkin_task._apply((), payload, START)
        assert sample("rewards_xp_granted_total", entry_type="checkin") == before

        monkeypatch.setattr(db, "transaction", sqlite_engine.begin)
        assert checkin_task._apply((), payload, START).status == "applied"
        assert sample("rewards_xp_granted_total", entry_type="checkin") == before + 10
    finally:
        checkin_task.pop_request()


def test_a_batch_counts_each_item_under_its_own_job_and_unknown_names_as_other():
    from rewards.contract.results import BatchResult

    batch = BatchResult.of([Outcome("applied"), Outcome("duplicate", reason="already_applied"),
                            Outcome("rejected", reason="invalid_payload")]).outcome()
    labels = {"job_name": contract.TASK_CLAIM, "status": "applied", "reason": ""}
    applied, duplicate, other = (sample("rewards_outcomes_total", **labels),
                                 sample("rewards_outcomes_total", **labels | {"status": "duplicate",
                                                                             "reason": "already_applied"}),
                                 sample("rewards_outcomes_total", job_name="other", status="rejected",
                                        reason="invalid_payload"))
    count_job(contract.CLAIMS_BATCH, batch, 0.01, sent_at=None, now_s=0.0,
              item_jobs=[contract.TASK_CLAIM, contract.TASK_CLAIM, "no such job"])
    assert sample("rewards_outcomes_total", **labels) == applied + 1
    assert sample("rewards_outcomes_total", **labels | {"status": "duplicate", "reason": "already_applied"}) \
        == duplicate + 1
    assert sample("rewards_outcomes_total", job_name="other", status="rejected", reason="invalid_payload") == other + 1
    assert sample("rewards_outcomes_total", job_name=contract.CLAIMS_BATCH, status="applied", reason="") == 0


def test_xp_of_a_batch_rolled_back_to_its_savepoint_and_applied_item_by_item_is_counted_once(sqlite_engine):
    from rewards.contract.payloads import CheckinBatchJob
    from rewards.ledger.batches import apply_checkin_batch

    with sqlite_engine.begin() as conn:  # the database refuses partner 999's check-in: the batch falls back
        conn.execute(text("CREATE TRIGGER refuse_999 BEFORE INSERT ON checkin WHEN NEW.partner_id = 999 "
                          "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"))
    batch = CheckinBatchJob(checkins=[{"partner_id": p, "occurred_at": START.isoformat()} for p in (998, 999, 1000)])
    with xp_tally() as tally, sqlite_engine.begin() as conn:
        outcome = apply_checkin_batch(conn, batch, Policy(), now=START, future_tolerance=timedelta(minutes=5),
                                      job_id="savepoint-test")
    assert [item.reason for item in outcome.details.items] == [None, "apply_failed", None]
    with sqlite_engine.connect() as conn:
        ledger_xp = conn.execute(text("SELECT SUM(amount) FROM xp_ledger")).scalar_one()
    assert sum(tally.values()) == ledger_xp == 20


@pytest.mark.parametrize("header", ["1700000000", float("nan"), -1e308, True, 10.0])
def test_a_send_time_that_is_not_a_plausible_number_is_ignored_not_raised(header):
    before = sample("rewards_job_latency_seconds_count", job_name=contract.CHECKIN)
    count_job(contract.CHECKIN, Outcome("applied"), 0.01, sent_at=header, now_s=1_800_000_000.0)
    assert sample("rewards_job_latency_seconds_count", job_name=contract.CHECKIN) == before
    count_job(contract.CHECKIN, Outcome("applied"), 0.01, sent_at=1_800_000_000.0 - 0.25, now_s=1_800_000_000.0)
    assert sample("rewards_job_latency_seconds_count", job_name=contract.CHECKIN) == before + 1

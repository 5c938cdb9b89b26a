"""Reconciliation finds broken invariants, reports them everywhere, and changes nothing.

Tests that corrupt data on purpose truncate it before they end, so the
autouse fixture's own invariant check sees a clean database.
"""

import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from rewards import contract, db
from rewards.cli import main as cli
from rewards.models import utcnow
from schedules import reconcile
from schedules.runner import LOCK_HELD
from tests.support.database import admin_transaction, truncate_tables
from tests.support.jobs import run
from tests.support.streaks import checkin, events

START = date(2026, 4, 1)


def reconcile_now(full: bool = False, now: datetime | None = None, batch_size: int = 50):
    return reconcile.run(db.get_engine(), now or utcnow(), batch_size, full=full, lag_s=300)


def history(client, partner_id: int, days: int) -> None:
    for offset in range(days):
        checkin(client, partner_id, START + timedelta(days=offset))


def snapshot(conn) -> tuple[list, list]:
    partners = conn.execute(text("SELECT * FROM partner ORDER BY id")).fetchall()
    ledger_rows = conn.execute(text("SELECT * FROM xp_ledger ORDER BY id")).fetchall()
    return partners, ledger_rows


@pytest.fixture
def corrupted() -> Iterator[None]:
    """For a test that breaks invariants on purpose (as the owner: no job may): leaves an empty database behind."""
    yield
    with admin_transaction() as connection:
        truncate_tables(connection)


def test_a_clean_database_reports_zero_mismatches(client, conn, capsys):
    history(client, 90, 8)
    history(client, 91, 3)
    summary = reconcile_now(full=True)
    assert (summary.examined, summary.details["mismatches"], summary.details["found"]) == (2, 0, [])
    assert cli.main(["reconcile", "--full"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("checked 2 partners (full) in ") and printed.rstrip().endswith(": 0 mismatches")
    assert events(conn, "reconciliation.mismatch") == []


def test_a_balance_edited_by_hand_is_reported_and_left_alone(client, conn, admin_conn, capsys, caplog, corrupted):
    history(client, 92, 3)
    history(client, 93, 2)
    admin_conn.execute(text("UPDATE partner SET xp = xp + 5 WHERE id = 92"))
    before = snapshot(conn)
    with caplog.at_level(logging.ERROR, logger="rewards.maintenance"):
        summary = reconcile_now(full=True)
    assert [(m["check"], m["partner_id"]) for m in summary.details["found"]] == [("balance_matches_ledger", 92)]
    assert summary.details["found"][0]["details"] == {"xp": 35, "ledger_sum": 30, "last_balance_after": 30}
    assert snapshot(conn) == before
    [event] = events(conn, "reconciliation.mismatch", 92)
    assert event.payload["check"] == "balance_matches_ledger"
    audited = conn.execute(text(
        "SELECT COUNT(*) FROM audit_event WHERE event_type = 'reconciliation.mismatch' AND partner_id = 92")).scalar()
    assert audited == 1
    assert any("event=reconciliation.mismatch check=balance_matches_ledger partner_id=92" in r.message
               for r in caplog.records if r.levelno == logging.ERROR)

    assert cli.main(["reconcile", "--full"]) == 1
    printed = capsys.readouterr().out
    assert "partner_id  check                   details" in printed
    assert "        92  balance_matches_ledger  xp=35 ledger_sum=30 last_balance_after=30" in printed


def test_a_deleted_ledger_row_breaks_the_chain_and_is_reported(client, conn, admin_conn, corrupted):
    history(client, 94, 4)
    middle_id = conn.execute(text(
        "SELECT id FROM xp_ledger WHERE partner_id = 94 ORDER BY id LIMIT 1 OFFSET 1")).scalar_one()
    admin_conn.execute(text("DELETE FROM xp_ledger WHERE id = :id"), {"id": middle_id})
    before = snapshot(conn)
    summary = reconcile_now()
    found = {m["check"]: m for m in summary.details["found"]}
    assert set(found) == {"balance_matches_ledger", "balance_chain_unbroken", "checkin_paid_once"}
    assert found["balance_chain_unbroken"]["details"] == {
        "ledger_id": middle_id + 1, "amount": 10, "balance_after": 30, "previous_balance_after": 10}
    assert found["checkin_paid_once"]["details"]["day"] == "2026-04-02"
    assert snapshot(conn) == before


def test_incremental_runs_look_only_at_partners_with_new_ledger_rows(client, admin_conn, corrupted):
    history(client, 95, 2)
    history(client, 96, 2)
    later = utcnow() + timedelta(hours=1)      # past the checkpoint's lag: those rows are settled
    assert reconcile_now(now=later).examined == 2
    admin_conn.execute(text("UPDATE partner SET xp = xp + 1 WHERE id = 95"))   # no ledger row: invisible
    checkin(client, 96, START + timedelta(days=2))
    incremental = reconcile_now(now=later + timedelta(seconds=1))
    assert (incremental.examined, incremental.details["mismatches"]) == (1, 0)
    full = reconcile_now(full=True, now=later + timedelta(seconds=2))
    assert (full.examined, [m["partner_id"] for m in full.details["found"]]) == (2, [95])


def test_a_reconcile_run_that_finds_the_lock_held_skips(client, capsys):
    history(client, 97, 1)
    with db.advisory_lock(db.get_engine(), contract.MAINTENANCE_RECONCILE):
        assert reconcile_now(full=True).skipped == LOCK_HELD
        assert cli.main(["reconcile"]) == 2
    assert "another reconcile run holds the lock" in capsys.readouterr().err
    assert reconcile_now(full=True).examined == 1


def test_the_reconcile_job_runs_on_the_worker(client, admin_conn, corrupted):
    history(client, 98, 2)
    admin_conn.execute(text("UPDATE partner SET xp = 0 WHERE id = 98"))
    result = run(client, contract.MAINTENANCE_RECONCILE, full=True)
    assert (result["examined"], result["mismatches"], result["mode"]) == (1, 1, "full")
    assert result["found"][0]["check"] == "balance_matches_ledger"


def test_a_referral_count_edited_by_hand_is_reported(client, conn, corrupted):
    from tests.support.jobs import refer

    refer(client, 95, 96)
    with admin_transaction() as connection:
        connection.execute(text("UPDATE partner SET referral_count = 5 WHERE id = 95"))
    summary = reconcile_now(full=True)
    assert [(m["check"], m["partner_id"]) for m in summary.details["found"]] == [("referral_count_matches", 95)]


def late_history(client, partner_id: int) -> None:
    """Days 1-3 and 5-11, then day 4 late, then a PRO change for day 9 on: corrections of both kinds."""
    for offset in [0, 1, 2] + list(range(4, 11)):
        checkin(client, partner_id, START + timedelta(days=offset))
    checkin(client, partner_id, START + timedelta(days=3))
    result = run(client, contract.PARTNER_UPDATE, partner_id=partner_id, pro_until="2030-01-01T00:00:00+00:00",
                 occurred_at=datetime(2026, 4, 9, tzinfo=timezone.utc).isoformat())
    assert result["corrections"]


def test_a_database_full_of_corrections_reconciles_with_zero_mismatches(client, conn):
    for partner_id in (95, 96, 97):
        late_history(client, partner_id)
    assert conn.execute(text("SELECT COUNT(*) FROM xp_ledger WHERE entry_type = 'correction'")).scalar() >= 9
    summary = reconcile_now(full=True)
    assert (summary.examined, summary.details["mismatches"]) == (3, 0)


def test_a_tampered_correction_row_is_found(client, admin_conn, corrupted):
    late_history(client, 98)
    admin_conn.execute(text("UPDATE xp_ledger SET base_amount = base_amount + 10, amount = amount + 10 "
                      "WHERE id = (SELECT MIN(id) FROM xp_ledger WHERE partner_id = 98 AND entry_type = 'correction')"))
    found = {m["check"] for m in reconcile_now(full=True).details["found"]}
    assert {"checkin_paid_once", "balance_matches_ledger"} <= found


def reconcile_in_small_runs(now: datetime, full: bool = False):
    """Two batches of two per run: four partners' worth, whatever is left over waits for the next run."""
    return reconcile.run(db.get_engine(), now, 2, full=full, lag_s=300, max_batches=2)


def test_incremental_runs_that_stop_at_their_limit_carry_on_until_every_partner_is_checked(
        client, admin_conn, corrupted):
    for partner_id in range(101, 108):
        checkin(client, partner_id, START)
    admin_conn.execute(text("UPDATE partner SET xp = xp + 5 WHERE id = 107"))
    later = utcnow() + timedelta(hours=1)      # past the checkpoint's lag: those rows are settled
    summaries = []
    for run_number in range(3):
        summaries.append(reconcile_in_small_runs(later + timedelta(seconds=run_number)))
        checkin(client, 101, START + timedelta(days=run_number + 1))   # new rows keep arriving below 107
    reported = [[m["partner_id"] for m in summary.details["found"]] for summary in summaries]
    assert reported == [[], [107], []]
    # Seven rows, then one new row per run: each run reads on from where the last one stopped.
    assert [summary.examined for summary in summaries] == [4, 4, 1]
    assert summaries[-1].more is False


def test_full_runs_that_stop_at_their_limit_carry_on_round_every_partner(client, admin_conn, corrupted):
    for partner_id in range(101, 106):
        checkin(client, partner_id, START)
    admin_conn.execute(text("UPDATE partner SET xp = xp + 5 WHERE id = 105"))   # no ledger row: full runs only
    now = utcnow()
    first, second = (reconcile_in_small_runs(now + timedelta(seconds=n), full=True) for n in range(2))
    assert (first.examined, first.more, first.details["found"]) == (4, True, [])
    assert [m["partner_id"] for m in second.details["found"]] == [105]
    # A run without a limit (the CLI's) still checks everyone, wherever the last run stopped.
    assert reconcile.run(db.get_engine(), now + timedelta(seconds=2), 50, full=True).examined == 5

"""The database itself enforces the invariants, and the migrations build the models' schema."""

from datetime import datetime, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import exc, insert, text

from rewards import db
from rewards.models import metadata, partner, xp_ledger

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def ledger_row(**overrides) -> dict:
    row = {"partner_id": 51, "entry_type": "adjustment", "base_amount": 5, "multiplier": 1, "amount": 5,
           "balance_after": 5, "idempotency_key": "k1", "rule_version": "v", "description": "d",
           "occurred_at": NOW, "created_at": NOW}
    return row | overrides


@pytest.fixture
def partner_51():
    with db.transaction() as conn:
        conn.execute(insert(partner).values(id=51, created_at=NOW, updated_at=NOW))


def rejected_by_database(statement, params=None) -> bool:
    try:
        with db.transaction() as conn:
            conn.execute(statement, params or {})
    except exc.IntegrityError:
        return True
    return False


def test_a_balance_cannot_go_below_zero(partner_51):
    assert rejected_by_database(text("UPDATE partner SET xp = xp - 1 WHERE id = 51"))


def test_a_zero_ledger_amount_is_refused(partner_51):
    assert rejected_by_database(insert(xp_ledger), ledger_row(base_amount=0, amount=0, balance_after=0))


def test_a_ledger_amount_must_be_base_times_multiplier(partner_51):
    assert rejected_by_database(insert(xp_ledger), ledger_row(multiplier=5, amount=5))


def test_an_idempotency_key_is_applied_at_most_once(partner_51):
    assert not rejected_by_database(insert(xp_ledger), ledger_row())
    assert rejected_by_database(insert(xp_ledger), ledger_row(balance_after=10))
    with db.transaction() as conn:  # leave the balance consistent with its ledger
        conn.execute(text("UPDATE partner SET xp = 5 WHERE id = 51"))


def test_a_checkin_day_is_a_key(partner_51):
    row = text("INSERT INTO checkin (partner_id, day, streak, base_xp, bonus_xp, multiplier, xp_granted,"
               " occurred_at, created_at) VALUES (51, '2026-01-01', 1, 10, 0, 1, 10, :t, :t)")
    with db.transaction() as conn:
        conn.execute(row, {"t": NOW})
    assert rejected_by_database(row, {"t": NOW})
    with db.transaction() as conn:
        conn.execute(text("DELETE FROM checkin WHERE partner_id = 51"))


def test_the_migrated_schema_matches_the_models():
    with db.get_engine().connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []

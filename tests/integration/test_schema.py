"""The database itself enforces the invariants, and the migrations build the models' schema."""

from datetime import datetime, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import CheckConstraint, exc, insert, inspect, text

from rewards import db
from rewards.models import metadata, modelled, partner, xp_ledger
from tests.support.database import admin_transaction

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def ledger_row(**overrides) -> dict:
    # A correction: adjustments and task rewards must each belong to their own key row.
    row = {"partner_id": 51, "entry_type": "correction", "base_amount": 5, "multiplier": 1, "amount": 5,
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
    granted = ledger_row(entry_type="adjustment", idempotency_key="adjustment:k1")
    assert not rejected_by_database(insert(xp_ledger), granted)
    assert rejected_by_database(insert(xp_ledger), granted | {"balance_after": 10})
    with db.transaction() as conn:  # leave the balance and the adjustment consistent with the ledger
        conn.execute(text("UPDATE partner SET xp = 5 WHERE id = 51"))
        conn.execute(text("INSERT INTO adjustment (request_id, partner_id, amount, reason, status, created_at)"
                          " VALUES ('k1', 51, 5, 'test', 'applied', :t)"), {"t": NOW})


def test_a_checkin_day_is_a_key(partner_51):
    row = text("INSERT INTO checkin (partner_id, day, streak, base_xp, bonus_xp, multiplier, xp_granted,"
               " occurred_at, created_at) VALUES (51, '2026-01-01', 1, 10, 0, 1, 10, :t, :t)")
    with db.transaction() as conn:
        conn.execute(row, {"t": NOW})
    assert rejected_by_database(row, {"t": NOW})
    with admin_transaction() as conn:  # no job deletes a check-in: the owner tidies up
        conn.execute(text("DELETE FROM checkin WHERE partner_id = 51"))


def test_the_migrated_schema_matches_the_models():
    with db.get_engine().connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": modelled})
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_the_migrations_create_every_check_constraint_and_partial_index_of_the_models():
    # compare_metadata looks at neither CHECK constraints nor partial-index predicates.
    with db.get_engine().connect() as conn:
        inspector = inspect(conn)
        for table in metadata.sorted_tables:
            migrated_checks = {check["name"] for check in inspector.get_check_constraints(table.name)}
            modelled_checks = {constraint.name for constraint in table.constraints
                               if isinstance(constraint, CheckConstraint)}
            assert migrated_checks == modelled_checks, table.name
            migrated_partial = {index["name"] for index in inspector.get_indexes(table.name)
                                if index.get("dialect_options", {}).get("postgresql_where") is not None}
            modelled_partial = {index.name for index in table.indexes
                                if index.dialect_options["postgresql"]["where"] is not None}
            assert migrated_partial == modelled_partial, table.name


def test_a_task_has_at_most_one_attempt_that_is_not_expired(partner_51):
    attempt = text("INSERT INTO partner_task (partner_id, task_id, attempt, status, start_day, started_at)"
                   " VALUES (51, 'telegram_bot', :attempt, 'STARTED', '2026-01-01', :t)")
    with db.transaction() as conn:
        conn.execute(attempt, {"attempt": 1, "t": NOW})
    assert rejected_by_database(attempt, {"attempt": 2, "t": NOW})
    with db.transaction() as conn:
        conn.execute(text("UPDATE partner_task SET status = 'EXPIRED' WHERE partner_id = 51"))
        conn.execute(attempt, {"attempt": 2, "t": NOW})


def test_a_partner_cannot_be_their_own_referrer(partner_51):
    assert rejected_by_database(text(
        "INSERT INTO referral (referee_id, referrer_id, occurred_at, created_at) VALUES (51, 51, :t, :t)"),
        {"t": NOW})

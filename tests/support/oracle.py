"""The integration tier's oracle: every partner's figures against the reference model (chaos/model.py).

The invariants checker (tests/support/invariants.py) proves the tables agree
with each other; this proves they agree with the rules. From the database it
reads only the *inputs* the rules take, never the engine's computed figures:

- each check-in's instant (`checkin.occurred_at`) and the time zone in force
  when the engine processed it (the audit trail's order of time-zone changes
  and check-ins: a time-zone change applies to check-ins processed after it);
- the plan history (`plan_change`), or for a partner whose plan no job set,
  the `pro_until` it was created with;
- each attempt's task, start and claim instants, and what its start
  snapshotted (`initial_metric_value`, `start_day`);
- the referrals, and the operator adjustments that were applied.

The model then folds the rules over them and says each partner's balance,
each day's streak, freeze and price, each attempt's price and the badges;
each is compared with the engine's rows and with the ledger rows that paid
it. Three figures are taken from the engine because they depend on
processing order, which no table keeps: whether an adjustment was refused
for lack of XP, the `xp_shortfall` a re-pricing could not take back (the
balance is compared net of it), and whether a claim met its requirement when
it ran (the model checks only that the applied jobs could have met it).

A test that seeds rows directly or applies what the model does not cover
says so with `@pytest.mark.outside_the_model(reason=..., partners=[...])`
(all partners when `partners` is left out): nothing is skipped silently.
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import date
from pathlib import Path

from sqlalchemy import Connection, text

from chaos.model import Attempt, Model, Partner, load_catalog
from rewards.contract import keys

_CATALOG_DEFAULT = Path(__file__).resolve().parents[2] / "rewards" / "catalog.toml"

_CHECKIN_KEY = keys.sql(keys.CHECKIN, partner_id="c.partner_id", day="c.day")
_STREAK_BONUS_KEY = keys.sql(keys.STREAK_BONUS, partner_id="c.partner_id", day="c.day")
_CHECKIN_CORRECTIONS = keys.sql(keys.CHECKIN_CORRECTION, partner_id="c.partner_id", day="c.day")
_TASK_KEY = keys.sql(keys.TASK, partner_id="t.partner_id", task_id="t.task_id", attempt="t.attempt")
_TASK_CORRECTIONS = keys.sql(keys.TASK_CORRECTION, partner_id="t.partner_id", task_id="t.task_id",
                             attempt="t.attempt")

_PARTNERS = text("""
    SELECT id, xp, checkin_streak, longest_streak, last_checkin_day, total_checkins, referral_count,
           pro_until, pro_until_set_at, timezone, timezone_set_at FROM partner ORDER BY id
""")
_PLAN_CHANGES = text("SELECT partner_id, occurred_at, pro_until FROM plan_change ORDER BY occurred_at")
# The order the engine processed time-zone changes and check-ins in, per partner
# (each job audits in its transaction, under the partner's lock).
_ZONE_TRAIL = text("""
    SELECT partner_id, event_type, payload -> 'changed' ->> 'timezone' AS timezone, payload ->> 'day' AS day
    FROM audit_event WHERE event_type IN ('checkin', 'partner.updated') ORDER BY id
""")
_CHECKINS = text(f"""
    SELECT c.partner_id, c.day, c.occurred_at, c.streak, c.frozen_days, c.bonus_xp, c.multiplier,
           c.xp_granted, c.xp_shortfall, CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) AS ledger_sum
    FROM checkin c
    LEFT JOIN xp_ledger l ON l.partner_id = c.partner_id
        AND (l.idempotency_key IN ({_CHECKIN_KEY}, {_STREAK_BONUS_KEY})
             OR (l.entry_type = 'correction' AND l.idempotency_key LIKE {_CHECKIN_CORRECTIONS}))
    GROUP BY c.partner_id, c.day, c.occurred_at, c.streak, c.frozen_days, c.bonus_xp, c.multiplier,
             c.xp_granted, c.xp_shortfall
    ORDER BY c.occurred_at
""")
_ATTEMPTS = text(f"""
    SELECT t.partner_id, t.task_id, t.attempt, t.status, t.initial_metric_value, t.start_day, t.started_at,
           t.completed_at, t.xp_granted, CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) AS ledger_sum
    FROM partner_task t
    LEFT JOIN xp_ledger l ON l.partner_id = t.partner_id
        AND ((l.entry_type = 'task_reward' AND l.idempotency_key = {_TASK_KEY})
             OR (l.entry_type = 'correction' AND l.idempotency_key LIKE {_TASK_CORRECTIONS}))
    GROUP BY t.partner_id, t.task_id, t.attempt, t.status, t.initial_metric_value, t.start_day,
             t.started_at, t.completed_at, t.xp_granted
    ORDER BY t.partner_id, t.task_id, t.attempt
""")
_REFERRALS = text("SELECT referrer_id, referee_id, occurred_at FROM referral ORDER BY occurred_at")
_ADJUSTMENTS = text("SELECT partner_id, amount FROM adjustment WHERE status = 'applied'")
_BADGES = text("SELECT partner_id, badge FROM partner_badge")


def catalog_path() -> Path:
    """The catalogue the suite's worker loaded: its file, read as data."""
    return Path(os.environ.get("REWARDS_CATALOG_PATH", "").strip() or _CATALOG_DEFAULT)


def differences(conn: Connection, exempt: set[int] | None = None) -> list[str]:
    """Every way the engine's rows differ from the model, one line each (partners in `exempt` aside)."""
    exempt = exempt or set()
    partners = [row for row in conn.execute(_PARTNERS) if row.id not in exempt]
    model = Model(load_catalog(catalog_path()))
    found: list[str] = []
    _seed_partners(model, partners, conn)
    checkins = _apply_checkins(model, conn, exempt, found)
    attempts = _apply_attempts(model, conn, exempt, found)
    for row in partners:
        _compare_partner(model.partners[row.id], row, checkins.get(row.id, []), found)
    for row in attempts:
        _compare_attempt(model.partners[row.partner_id], row, found)
    _compare_badges(model, conn, partners, found)
    return found


def _seed_partners(model: Model, partners: list, conn: Connection) -> None:
    """Each partner's plan history, time zone, referrals and applied adjustments."""
    known = {row.id for row in partners}
    for row in partners:
        p = model.partner(row.id)
        p.timezone = row.timezone if row.timezone_set_at is None else "UTC"
        if row.pro_until_set_at is None:
            p.pro_until_always = row.pro_until
    for change in conn.execute(_PLAN_CHANGES):
        if change.partner_id in known:
            model.apply("rewards.partner.update", {"partner_id": change.partner_id, "occurred_at": change.occurred_at,
                                                   "pro_until": change.pro_until})
    for referral in conn.execute(_REFERRALS):
        if referral.referrer_id in known:
            model.partner(referral.referrer_id).referral_count += 1
    for adjustment in conn.execute(_ADJUSTMENTS):
        if adjustment.partner_id in known:
            model.partner(adjustment.partner_id).adjustments_xp += adjustment.amount


def _zones_by_day(conn: Connection, partners: dict[int, Partner]) -> dict[tuple[int, str], str]:
    """The time zone each check-in was processed in, from the order of the audit trail."""
    zone = {partner_id: p.timezone for partner_id, p in partners.items()}
    found = {}
    for event in conn.execute(_ZONE_TRAIL):
        if event.partner_id not in zone:
            continue
        if event.event_type == "partner.updated" and event.timezone:
            zone[event.partner_id] = event.timezone
        elif event.event_type == "checkin" and event.day:
            found.setdefault((event.partner_id, event.day), zone[event.partner_id])
    return found


def _apply_checkins(model: Model, conn: Connection, exempt: set[int], found: list[str]) -> dict[int, list]:
    zones = _zones_by_day(conn, model.partners)
    rows: dict[int, list] = defaultdict(list)
    for row in conn.execute(_CHECKINS):
        if row.partner_id in exempt:
            continue
        rows[row.partner_id].append(row)
        zone = zones.get((row.partner_id, row.day.isoformat()), model.partners[row.partner_id].timezone)
        status = model.apply("rewards.checkin", {"partner_id": row.partner_id, "occurred_at": row.occurred_at,
                                                 "timezone": zone})
        if status != "applied":
            found.append(f"partner {row.partner_id}: the check-in at {row.occurred_at} was applied; "
                         f"the rules say {status}")
    return rows


def _apply_attempts(model: Model, conn: Connection, exempt: set[int], found: list[str]) -> list:
    attempts = [row for row in conn.execute(_ATTEMPTS) if row.partner_id not in exempt]
    for row in attempts:
        if row.task_id not in model.catalog:
            found.append(f"partner {row.partner_id}: attempt at {row.task_id!r}, a task not in the catalogue")
            continue
        completed_at = row.completed_at if row.status == "COMPLETED" else None
        model.partner(row.partner_id).attempts.append(Attempt(
            row.task_id, row.attempt, row.started_at, row.start_day, row.initial_metric_value, completed_at))
    return [row for row in attempts if row.task_id in model.catalog]


def _compare_partner(p: Partner, row, checkins: list, found: list[str]) -> None:
    priced = {day.day: day for day in p.days()}
    engine_days = {checkin.day for checkin in checkins}
    if engine_days != set(priced):
        found.append(f"partner {row.id}: check-in days {_days(engine_days)}, the model's {_days(set(priced))}")
    for checkin in checkins:
        want = priced.get(checkin.day)
        if want is None:
            continue
        mine = (checkin.streak, checkin.frozen_days, checkin.bonus_xp, checkin.multiplier, checkin.xp_granted,
                checkin.ledger_sum - checkin.xp_shortfall)
        theirs = (want.streak_days, want.frozen_days, want.bonus_xp, want.multiplier, want.xp_granted,
                  want.xp_granted)
        if mine != theirs:
            found.append(f"partner {row.id} day {checkin.day}: (streak, frozen, bonus, ×, xp_granted, "
                         f"ledger net of shortfall) engine {mine}, model {theirs}")
    shortfall_xp = sum(checkin.xp_shortfall for checkin in checkins)
    mine = (row.xp - shortfall_xp, row.total_checkins, row.last_checkin_day, row.longest_streak,
            row.referral_count)
    theirs = (p.xp, p.checkins, max(priced, default=None), p.longest_streak, p.referral_count)
    if mine != theirs:
        found.append(f"partner {row.id}: (xp net of shortfall, check-ins, last day, longest, referrals) "
                     f"engine {mine}, model {theirs}")
    # Streak expiry may have ended the current streak (it sets 0), never moved it.
    if row.checkin_streak not in (p.streak, 0):
        found.append(f"partner {row.id}: current streak {row.checkin_streak}, the model's {p.streak}")


def _compare_attempt(p: Partner, row, found: list[str]) -> None:
    attempt = next(a for a in p.attempts if (a.task_id, a.attempt) == (row.task_id, row.attempt))
    if attempt.completed_at is None:
        if row.ledger_sum:
            found.append(f"partner {row.partner_id}: {row.status} attempt {row.task_id}#{row.attempt} "
                         f"has {row.ledger_sum} XP on the ledger")
        return
    want_xp = p.task_xp(attempt)
    if (row.xp_granted, row.ledger_sum) != (want_xp, want_xp):
        found.append(f"partner {row.partner_id}: {row.task_id}#{row.attempt} (xp_granted, ledger) "
                     f"engine {(row.xp_granted, row.ledger_sum)}, model {want_xp}")
    required = p.catalog[row.task_id].requirement
    progress = Model(p.catalog).progress(p, attempt, latest_only=False)
    if progress < required:
        found.append(f"partner {row.partner_id}: {row.task_id}#{row.attempt} was paid, but the applied jobs "
                     f"never reach its requirement ({progress}/{required})")


def _compare_badges(model: Model, conn: Connection, partners: list, found: list[str]) -> None:
    held: dict[int, set[str]] = defaultdict(set)
    for badge in conn.execute(_BADGES):
        held[badge.partner_id].add(badge.badge)
    for row in partners:
        want = model.partners[row.id].badges
        if held[row.id] != want:
            found.append(f"partner {row.id}: badges {sorted(held[row.id])}, the model's {sorted(want)}")


def _days(days: set[date]) -> str:
    return ", ".join(day.isoformat() for day in sorted(days)) or "none"


def assert_agrees_with_model(conn: Connection, exempt: set[int] | None = None) -> None:
    found = differences(conn, exempt)
    assert not found, "the engine disagrees with the reference model (chaos/model.py):\n  " + "\n  ".join(
        found[:20])

"""Every idempotency key, in one place: the format of each, for Python and for SQL.

A key names one fact that may be applied at most once (a partner's check-in
on a day, one attempt at a task, one operator request). The ledger stores it
in `xp_ledger.idempotency_key` (UNIQUE) and the outbox in
`outbox.idempotency_key`; producers look an outcome up by it. The formats are
part of the contract: reports and reconciliation join on them.

Each format is written once, as a template. `sql()` renders the same template
as a SQL expression over columns, so a check that joins ledger rows to the
facts they pay uses the very format the write path used:

    keys.sql(keys.CHECKIN, partner_id="c.partner_id", day="c.day")
    -> 'checkin\\:' || c.partner_id || '\\:' || c.day
"""

from __future__ import annotations

from datetime import date, datetime
from string import Formatter

# Ledger keys: one per XP movement.
CHECKIN = "checkin:{partner_id}:{day}"
STREAK_BONUS = "checkin:{partner_id}:{day}:bonus"
TASK = "task:{partner_id}:{task_id}:{attempt}"
ADJUSTMENT = "adjustment:{request_id}"
# A re-priced day or attempt: revision n is its n-th correction. The prefix
# is the corrected fact's own key, so its rows are found together.
CHECKIN_CORRECTION = "checkin:{partner_id}:{day}:correction:{revision}"
TASK_CORRECTION = "task:{partner_id}:{task_id}:{attempt}:correction:{revision}"

# Keys of results that move no XP.
REFERRAL = "referral:{referee_id}"
PARTNER_UPDATE = "partner_update:{partner_id}:{occurred_at}"

# Outbox keys: events that must exist once per fact.
STREAK_FREEZE_EVENT = "streak_freeze:{partner_id}:{iso_week}"
MILESTONE_EVENT = "checkin_milestone:{partner_id}:{day}"
BADGE_EVENT = "badge:{partner_id}:{badge}"
STREAK_RISK_EVENT = "streak_risk:{partner_id}:{day}"
STREAK_LOST_EVENT = "streak_lost:{partner_id}:{day}"
TASK_EXPIRED_EVENT = "task_expired:{partner_id}:{task_id}:{attempt}"


def _text(value: object) -> str:
    return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


def key(template: str, **values: object) -> str:
    """The key `template` names for these values; dates and instants in ISO-8601."""
    return template.format(**{name: _text(value) for name, value in values.items()})


def checkin_key(partner_id: int, day: date) -> str:
    return key(CHECKIN, partner_id=partner_id, day=day)


def streak_bonus_key(partner_id: int, day: date) -> str:
    return key(STREAK_BONUS, partner_id=partner_id, day=day)


def task_key(partner_id: int, task_id: str, attempt: int) -> str:
    return key(TASK, partner_id=partner_id, task_id=task_id, attempt=attempt)


def checkin_correction_key(partner_id: int, day: date, revision: int) -> str:
    return key(CHECKIN_CORRECTION, partner_id=partner_id, day=day, revision=revision)


def task_correction_key(partner_id: int, task_id: str, attempt: int, revision: int) -> str:
    return key(TASK_CORRECTION, partner_id=partner_id, task_id=task_id, attempt=attempt, revision=revision)


def adjustment_key(request_id: str) -> str:
    return key(ADJUSTMENT, request_id=request_id)


def referral_key(referee_id: int) -> str:
    return key(REFERRAL, referee_id=referee_id)


def partner_update_key(partner_id: int, occurred_at: datetime) -> str:
    return key(PARTNER_UPDATE, partner_id=partner_id, occurred_at=occurred_at)


def sql(template: str, **columns: str) -> str:
    """The template as a SQL string expression over `columns` (for `text()` statements).

    Literal parts are quoted, with their colons escaped so `text()` does not
    take them for bind parameters; each field becomes its column, which
    PostgreSQL and SQLite both print as the Python side does (a date as
    YYYY-MM-DD, an integer in decimal). A field left out becomes `%`, for
    LIKE: `keys.sql(keys.CHECKIN_CORRECTION, partner_id=…, day=…)` matches
    every correction of a day.
    """
    parts = []
    for literal, field, _, _ in Formatter().parse(template):
        if literal:
            parts.append("'" + literal.replace("'", "''").replace(":", "\\:") + "'")
        if field is not None:
            parts.append(columns.get(field, "'%'"))
    return " || ".join(parts)

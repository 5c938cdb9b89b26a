"""Tasks, referrals, adjustments and the read side on SQLite, the embedded default.

The statements are the same SQLAlchemy Core the workers run on PostgreSQL;
here they are applied directly to a fresh SQLite file, one transaction per job.
"""

from datetime import datetime, timedelta, timezone


from rewards import catalog, queries
from rewards.contract.payloads import (
    AdjustmentJob,
    CheckinJob,
    ReferralJob,
    TaskClaimJob,
    TaskStartJob,
)
from rewards.ledger.adjustments import apply_adjustment
from rewards.ledger.checkins import apply_checkin
from rewards.ledger.quests import apply_task_claim, apply_task_start
from rewards.ledger.referrals import apply_referral
from rewards.rules import Policy
from tests.support.invariants import assert_invariants

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
TOLERANCE = timedelta(minutes=5)
CATALOG = catalog.load()
POLICY = Policy()


def apply(engine, function, job, **options):
    with engine.begin() as conn:
        return function(conn, job, now=NOW, **options).as_result()


def task_job(model, partner_id, task_id, days_ago=0.0):
    at = (NOW - timedelta(days=days_ago)).isoformat()
    return model.model_validate({"partner_id": partner_id, "task_id": task_id, "occurred_at": at})


def test_a_referral_task_is_started_earned_claimed_once_and_previewed_on_sqlite(sqlite_engine):
    engine = sqlite_engine
    assert apply(engine, apply_task_start, task_job(TaskStartJob, 1, "invite_1_friend", 2), catalog=CATALOG,
                 future_tolerance=TOLERANCE)["status"] == "applied"
    referral = ReferralJob.model_validate({"referrer_id": 1, "referee_id": 2, "occurred_at": NOW.isoformat()})
    assert apply(engine, apply_referral, referral, future_tolerance=TOLERANCE)["referral_count"] == 1
    assert apply(engine, apply_referral, referral, future_tolerance=TOLERANCE)["status"] == "duplicate"
    with engine.connect() as conn:
        preview = next(view for view in queries.tasks(conn, 1, catalog=CATALOG, policy=POLICY, at=NOW)
                       if view.task_id == "invite_1_friend")
    claims = [apply(engine, apply_task_claim, task_job(TaskClaimJob, 1, "invite_1_friend"), catalog=CATALOG,
                    policy=POLICY, future_tolerance=TOLERANCE) for _ in range(2)]

    assert [c["status"] for c in claims] == ["applied", "duplicate"]
    assert preview.claimable and claims[0]["xp_granted"] == preview.xp_on_claim == 250
    with engine.connect() as conn:
        assert_invariants(conn)
        assert [row.partner_id for row in queries.leaderboard(conn, "xp")] == [1]


def test_an_action_task_and_an_adjustment_run_on_sqlite(sqlite_engine):
    engine = sqlite_engine
    apply(engine, apply_task_start, task_job(TaskStartJob, 5, "daily_checkin_5", 5), catalog=CATALOG,
          future_tolerance=TOLERANCE)
    for days_ago in (4, 3, 2, 1, 0):
        checkin = CheckinJob.model_validate({"partner_id": 5,
                                             "occurred_at": (NOW - timedelta(days=days_ago)).isoformat()})
        apply(engine, apply_checkin, checkin, policy=POLICY, future_tolerance=TOLERANCE)
    claimed = apply(engine, apply_task_claim, task_job(TaskClaimJob, 5, "daily_checkin_5"), catalog=CATALOG,
                    policy=POLICY, future_tolerance=TOLERANCE)
    deduction = AdjustmentJob.model_validate({"partner_id": 5, "amount": -1000, "reason": "too much",
                                              "request_id": "r-5"})
    refused = apply(engine, apply_adjustment, deduction)

    assert claimed["status"] == "applied" and claimed["xp_after"] == 50 + 250
    assert refused["reason"] == "insufficient_xp"
    with engine.connect() as conn:
        may = queries.streak_calendar(conn, 5, "2026-05", policy=POLICY)
        assert [day.day.day for day in may if day.checked_in] == [28, 29, 30, 31]
        assert_invariants(conn)


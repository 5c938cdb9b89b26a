"""The reward rules as the reference document states them, as plain tables."""

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewards.rules import (
    Policy,
    Progress,
    action_progress,
    checkin_reward,
    holds_at_same_instant,
    is_pro,
    local_day,
    next_streak_days,
    referral_progress,
    social_progress,
    task_reward,
)

POLICY = Policy()
UTC = timezone.utc


def thirty_day_total(pro: bool) -> int:
    return sum(checkin_reward(day, pro, POLICY).xp_granted for day in range(1, 31))


def test_thirty_consecutive_days_pay_900_regular_and_4500_pro():
    assert thirty_day_total(pro=False) == 900
    assert thirty_day_total(pro=True) == 4_500


@pytest.mark.parametrize(
    ("streak_days", "pro", "base_xp", "bonus_xp", "xp_granted"),
    [
        (1, False, 10, 0, 10),
        (1, True, 10, 0, 50),
        (6, False, 10, 0, 10),
        (7, False, 10, 150, 160),
        (7, True, 10, 150, 800),
        (14, True, 10, 150, 800),
        (21, True, 10, 150, 800),
        (8, True, 10, 0, 50),
    ],
)
def test_checkin_reward_matches_the_reference_examples(streak_days, pro, base_xp, bonus_xp, xp_granted):
    reward = checkin_reward(streak_days, pro, POLICY)
    assert (reward.base_xp, reward.bonus_xp, reward.xp_granted) == (base_xp, bonus_xp, xp_granted)


def test_seven_checkins_pay_ten_times_six_plus_one_sixty():
    assert sum(checkin_reward(day, False, POLICY).xp_granted for day in range(1, 8)) == 10 * 6 + 160


def test_a_streak_of_zero_days_is_a_bug_not_a_reward():
    with pytest.raises(ValueError):
        checkin_reward(0, False, POLICY)


@pytest.mark.parametrize(
    ("previous", "last_day", "day", "expected"),
    [
        (0, None, date(2026, 1, 1), 1),
        (3, date(2026, 1, 1), date(2026, 1, 2), 4),
        (3, date(2026, 1, 1), date(2026, 1, 3), 1),  # a missed day resets the streak
        (6, date(2026, 2, 28), date(2026, 3, 1), 7),  # month boundary
        (9, date(2026, 12, 31), date(2027, 1, 1), 10),  # year boundary
    ],
)
def test_next_streak_days(previous, last_day, day, expected):
    assert next_streak_days(previous, last_day, day) == expected


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        ("2026-03-01T23:30:00+00:00", "Asia/Tokyo", date(2026, 3, 2)),
        ("2026-03-01T23:30:00+00:00", "UTC", date(2026, 3, 1)),
        ("2026-03-02T03:00:00+00:00", "America/Los_Angeles", date(2026, 3, 1)),
        # America/New_York springs forward on 2026-03-08 and falls back on 2026-11-01.
        ("2026-03-08T05:30:00+00:00", "America/New_York", date(2026, 3, 8)),  # 00:30 EST
        ("2026-03-09T03:30:00+00:00", "America/New_York", date(2026, 3, 8)),  # 23:30 EDT
        ("2026-11-01T04:30:00+00:00", "America/New_York", date(2026, 11, 1)),  # 00:30 EDT
        ("2026-11-02T04:30:00+00:00", "America/New_York", date(2026, 11, 1)),  # 23:30 EST
    ],
)
def test_local_day_is_the_calendar_day_in_the_partners_zone(instant, zone, expected):
    assert local_day(datetime.fromisoformat(instant), zone) == expected


def test_local_day_refuses_a_naive_instant():
    with pytest.raises(ValueError):
        local_day(datetime(2026, 1, 1, 12), "UTC")


def test_pro_is_decided_by_the_instant_against_pro_until():
    until = datetime(2026, 6, 1, tzinfo=UTC)
    assert is_pro(until, until - timedelta(seconds=1))
    assert not is_pro(until, until)
    assert not is_pro(None, until)


@pytest.mark.parametrize(("value", "other", "holds"), [
    (datetime(2027, 1, 2, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), True),
    (datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 1, 2, tzinfo=UTC), False),
    (datetime(2027, 1, 1, tzinfo=UTC), None, True),
    (None, datetime(2027, 1, 1, tzinfo=UTC), False),
    ("Europe/Berlin", "Asia/Tokyo", True),
    ("Asia/Tokyo", "Europe/Berlin", False),
])
def test_of_two_values_set_at_the_same_instant_the_greater_holds(value, other, holds):
    assert holds_at_same_instant(value, other) is holds
    assert holds_at_same_instant(other, value) is not holds


def test_policy_version_names_the_amounts():
    assert Policy().version == Policy().version
    assert Policy(checkin_xp=20).version != Policy().version


@given(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=60), st.booleans())
def test_any_checkin_sequence_pays_base_per_day_plus_a_bonus_per_full_week(gaps, pro):
    """Walk check-ins separated by 1-3 days: the pay is always derivable from the streaks."""
    day, last_day, streak, paid = date(2026, 1, 1), None, 0, 0
    expected = 0
    for gap in gaps:
        day += timedelta(days=gap)
        streak = next_streak_days(streak, last_day, day)
        last_day = day
        paid += checkin_reward(streak, pro, POLICY).xp_granted
        expected += (10 + (150 if streak % 7 == 0 else 0)) * (5 if pro else 1)
        assert 1 <= streak
    assert paid == expected


# Tasks: progress and price, the same functions for the claim and the preview.


@pytest.mark.parametrize(
    ("referral_count", "initial", "required", "shown", "met"),
    [
        (3, 0, 3, "3/3", True),
        (2, 0, 3, "2/3", False),
        (7, 5, 3, "2/3", False),   # friends referred before the start do not count
        (15, 5, 10, "10/10", True),
        (4, 0, 3, "4/3", True),
    ],
)
def test_referral_progress_counts_friends_since_the_start(referral_count, initial, required, shown, met):
    progress = referral_progress(referral_count, initial, required)
    assert (str(progress), progress.met) == (shown, met)


@pytest.mark.parametrize(
    ("latest_streak_days", "checkin_days_since_start", "current"),
    [
        (8, 5, 5),   # the run began before the start day: only days since the start count
        (5, 6, 5),   # the streak broke after the start: the new run of 5 counts (the reference said 2)
        (1, 5, 1),   # broke just now: progress falls back to 1, never below zero
        (0, 0, 0),   # no check-in since the start
    ],
)
def test_action_progress_is_the_run_of_checkin_days_since_the_start(latest_streak_days,
                                                                     checkin_days_since_start, current):
    assert action_progress(latest_streak_days, checkin_days_since_start, 5) == Progress(current, 5)


@given(st.sets(st.integers(min_value=0, max_value=40), max_size=40), st.integers(min_value=0, max_value=40))
def test_action_progress_equals_counting_the_run_day_by_day(checkin_offsets, start_offset):
    """Any set of check-in days and any start day: the rule agrees with a plain walk back."""
    first = date(2026, 1, 1)
    days = sorted(first + timedelta(days=offset) for offset in checkin_offsets)
    start_day = first + timedelta(days=start_offset)
    streak, last_day = 0, None
    for day in days:
        streak = next_streak_days(streak, last_day, day)
        last_day = day
    since_start = [day for day in days if day >= start_day]
    walked = 0
    for day in reversed(since_start):
        if walked and day != since_start[-1] - timedelta(days=walked):
            break
        walked += 1
    progress = action_progress(streak if since_start else 0, len(since_start), 5)
    assert progress.current == walked


def test_a_social_task_has_no_requirement_and_is_always_met():
    assert social_progress().met and social_progress().required == 0


@pytest.mark.parametrize(
    ("reward_xp", "pro", "xp_granted"),
    [(500, False, 500), (500, True, 2_500), (250, True, 1_250), (10_000, False, 10_000)],
)
def test_a_task_pays_its_reward_times_the_pro_multiplier(reward_xp, pro, xp_granted):
    reward = task_reward(reward_xp, pro, POLICY)
    assert reward.xp_granted == xp_granted and reward.base_xp == reward_xp


def test_a_task_reward_of_zero_is_a_bug_not_a_payment():
    with pytest.raises(ValueError):
        task_reward(0, False, POLICY)

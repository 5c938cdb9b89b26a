"""The streak freeze and expiry rule, and the badges and milestones streaks earn, as tables."""

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewards.ledger.outbox import retry_delay_s
from rewards.rules import (
    Policy,
    badge_reached,
    frozen_day,
    is_milestone,
    iso_week,
    next_streak,
    next_streak_days,
    streak_continues,
)

MONDAY = date(2026, 1, 5)


def day(offset: int) -> date:
    return MONDAY + timedelta(days=offset)


@pytest.mark.parametrize(
    ("last_offset", "day_offset", "pro", "freeze_available", "expected"),
    [
        (None, 0, True, True, (False, 0)),    # no check-in yet: nothing to continue
        (0, 0, False, False, (True, 0)),      # already checked in that day
        (0, 1, False, False, (True, 0)),      # the next day
        (0, 2, False, True, (False, 0)),      # one missed day, not PRO
        (0, 2, True, True, (True, 1)),        # one missed day, PRO with a freeze left
        (0, 2, True, False, (False, 0)),      # one missed day, PRO, this week's freeze used
        (0, 3, True, True, (False, 0)),       # two missed days: no freeze bridges that
        (0, 30, True, True, (False, 0)),
    ],
)
def test_streak_continues_decides_for_checkins_and_expiry_alike(last_offset, day_offset, pro,
                                                                freeze_available, expected):
    last = None if last_offset is None else day(last_offset)
    assert streak_continues(last, day(day_offset), pro, freeze_available) == expected


@pytest.mark.parametrize(
    ("previous", "gap_days", "pro", "freeze_available", "streak_days", "frozen_days"),
    [
        (5, 1, False, False, 6, 0),
        (5, 2, True, True, 6, 1),     # the frozen day keeps the streak but does not add to it
        (5, 2, True, False, 1, 0),
        (5, 2, False, True, 1, 0),
        (0, 2, True, True, 1, 0),     # nothing left to keep: no freeze is spent
        (5, 3, True, True, 1, 0),
    ],
)
def test_next_streak_is_previous_plus_one_when_it_continues(previous, gap_days, pro, freeze_available,
                                                            streak_days, frozen_days):
    step = next_streak(previous, MONDAY, MONDAY + timedelta(days=gap_days), pro=pro,
                       freeze_available=freeze_available)
    assert (step.streak_days, step.frozen_days) == (streak_days, frozen_days)


def test_the_freeze_free_streak_is_the_foundations_rule():
    assert next_streak_days(4, MONDAY, day(1)) == 5
    assert next_streak_days(4, MONDAY, day(2)) == 1


@pytest.mark.parametrize(
    ("missed", "week"),
    [
        (date(2026, 1, 5), "2026-W02"),   # Monday
        (date(2026, 1, 11), "2026-W02"),  # Sunday of the same week
        (date(2026, 1, 12), "2026-W03"),
        (date(2027, 1, 1), "2026-W53"),   # a Friday that ISO puts in the previous year's week 53
        (date(2025, 12, 29), "2026-W01"),  # a Monday that ISO puts in the next year's week 1
    ],
)
def test_a_freeze_counts_against_the_iso_week_of_the_missed_day(missed, week):
    assert iso_week(missed) == week


def test_the_frozen_day_is_the_one_after_the_last_checkin():
    assert frozen_day(date(2026, 2, 28)) == date(2026, 3, 1)


@pytest.mark.parametrize(
    ("streak_days", "badge"),
    [(1, None), (6, None), (7, "consistency_champion"), (8, None), (14, None),
     (30, "elite_operator"), (100, "legendary_status"), (101, None)],
)
def test_a_badge_is_reached_on_the_day_the_streak_hits_its_threshold(streak_days, badge):
    assert badge_reached(streak_days) == badge


def test_milestones_fall_on_every_whole_bonus_period():
    assert [d for d in range(0, 30) if is_milestone(d, Policy())] == [7, 14, 21, 28]
    assert [d for d in range(0, 10) if is_milestone(d, Policy(streak_bonus_period_days=3))] == [3, 6, 9]


def test_relay_retry_delay_doubles_up_to_its_cap():
    assert [retry_delay_s(n, cap_s=10) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


@given(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=80))
def test_a_pro_partner_uses_at_most_one_freeze_per_iso_week_and_never_gains_a_day_from_one(gaps):
    """Walk a PRO partner's check-ins with gaps of 1-4 days, spending freezes as the rule allows."""
    current, streak, used_weeks = MONDAY, 1, set()
    for gap in gaps:
        following = current + timedelta(days=gap)
        week = iso_week(frozen_day(current))
        step = next_streak(streak, current, following, pro=True, freeze_available=week not in used_weeks)
        if step.frozen_days:
            assert gap == 2 and week not in used_weeks
            used_weeks.add(week)
        expected = streak + 1 if gap == 1 or step.frozen_days else 1
        assert step.streak_days == expected
        current, streak = following, step.streak_days


@given(st.integers(min_value=0, max_value=3), st.booleans(), st.booleans())
def test_expiry_and_checkin_agree_on_whether_a_streak_survives_today(missed_days, pro, freeze_available):
    """What expiry decides about `today` is what a check-in made today would get."""
    today = MONDAY + timedelta(days=missed_days + 1)
    alive, _ = streak_continues(MONDAY, today, pro, freeze_available)
    step = next_streak(9, MONDAY, today, pro=pro, freeze_available=freeze_available)
    assert alive == (step.streak_days == 10)

"""Pricing a run of check-ins in day order: the fold a late job re-runs, as worked examples."""

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from rewards.rules import DayCheckin, Policy, price_checkins

POLICY = Policy()
MONDAY = date(2026, 1, 5)


def days(*offsets: int, pro: bool = False) -> list[DayCheckin]:
    return [DayCheckin(MONDAY + timedelta(days=offset), pro) for offset in offsets]


def price(checkins: list[DayCheckin], weeks_used: frozenset[str] = frozenset()):
    return price_checkins(checkins, previous_day=None, previous_streak_days=0,
                          freeze_weeks_used=weeks_used, policy=POLICY)


def test_fourteen_days_in_any_order_pay_the_day_7_and_day_14_bonuses():
    priced = price(list(reversed(days(*range(14)))))
    assert [day.streak_days for day in priced] == list(range(1, 15))
    assert sum(day.reward.xp_granted for day in priced) == 440
    assert [day.day for day in priced if day.reward.bonus_xp] == [MONDAY + timedelta(days=6),
                                                                   MONDAY + timedelta(days=13)]


def test_a_day_that_joins_two_runs_moves_the_bonus_to_the_joined_runs_seventh_day():
    apart = price(days(0, 1, 2, 4, 5, 6, 7, 8, 9, 10))            # day 4 (offset 3) missing
    joined = price(days(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10))
    assert [day.streak_days for day in apart][3:] == [1, 2, 3, 4, 5, 6, 7]
    assert [day.streak_days for day in joined] == list(range(1, 12))
    assert sum(day.reward.xp_granted for day in apart) == 10 * 10 + 150
    assert sum(day.reward.xp_granted for day in joined) == 11 * 10 + 150


def test_a_pro_partner_bridges_one_missed_day_once_per_iso_week():
    priced = price(days(0, 2, 4, pro=True))                         # Tue and Thu missed, one week
    assert [(day.streak_days, day.frozen_days) for day in priced] == [(1, 0), (2, 1), (1, 0)]


def test_a_freeze_already_spent_that_week_is_not_spent_again():
    priced = price_checkins(days(2, pro=True), previous_day=MONDAY, previous_streak_days=4,
                            freeze_weeks_used=frozenset({"2026-W02"}), policy=POLICY)
    assert [(day.streak_days, day.frozen_days) for day in priced] == [(1, 0)]


def test_the_pro_multiplier_is_each_days_own():
    priced = price(days(0, 1, 2, 3, 4, 5) + days(6, pro=True))
    assert [day.reward.xp_granted for day in priced] == [10] * 6 + [800]


@given(st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=15, unique=True),
       st.lists(st.booleans(), min_size=15, max_size=15), st.randoms())
def test_the_price_of_a_set_of_days_does_not_depend_on_their_order(offsets, pro_flags, rng):
    checkins = [DayCheckin(MONDAY + timedelta(days=o), pro) for o, pro in zip(offsets, pro_flags)]
    shuffled = list(checkins)
    rng.shuffle(shuffled)
    assert price(shuffled) == price(checkins)

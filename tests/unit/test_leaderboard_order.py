"""The leaderboard order and the catch-up checkpoint: pure functions, no servers."""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from rewards import leaderboards
from rewards.leaderboards import Standing, rank_score, score_of, sort_key
from schedules.update_leaderboards import advance_mark

NINE = datetime(2026, 3, 9, 9, 0, tzinfo=timezone.utc)


def test_a_higher_score_always_comes_first_whenever_it_was_reached():
    assert rank_score(201, NINE + timedelta(days=3000)) < rank_score(200, NINE - timedelta(days=3000))


def test_on_the_same_score_the_earlier_minute_comes_first_and_within_a_minute_the_lower_id():
    early, late = Standing(9, 100, NINE), Standing(2, 100, NINE + timedelta(minutes=1))
    same_minute = Standing(5, 100, NINE + timedelta(seconds=59))
    assert sorted([late, same_minute, early], key=sort_key) == [same_minute, early, late]


@pytest.mark.parametrize("score", [1, 7, 230, 123_456, leaderboards.SCORE_MAX])
def test_the_redis_score_is_exact_in_a_double_and_gives_the_score_back(score):
    for reached in (datetime(1999, 1, 1, tzinfo=timezone.utc), NINE, datetime(2126, 1, 1, tzinfo=timezone.utc)):
        encoded = rank_score(score, reached)
        assert float(encoded) == encoded and score_of(float(encoded)) == score


@pytest.mark.parametrize("score", [0, -5, leaderboards.SCORE_MAX + 1])
def test_a_score_off_the_board_or_beyond_53_bits_is_refused(score):
    with pytest.raises(ValueError, match="leaderboard score must be from 1"):
        rank_score(score, NINE)


def test_members_are_padded_so_redis_byte_order_is_id_order():
    assert sorted([leaderboards.member(10), leaderboards.member(9)]) == [leaderboards.member(9),
                                                                         leaderboards.member(10)]


def test_the_bucket_of_a_minute_holds_exactly_the_instants_of_that_minute():
    start, end = leaderboards.bucket_bounds(NINE + timedelta(seconds=30))
    assert (start, end) == (NINE, NINE + timedelta(minutes=1))


def test_weeks_are_iso_weeks_in_utc():
    assert leaderboards.week_of(datetime(2026, 3, 8, 23, 59, tzinfo=timezone.utc)) == "2026-W10"
    assert leaderboards.week_of(datetime(2026, 3, 9, 0, 30, tzinfo=timezone(timedelta(hours=2)))) == "2026-W10"
    assert leaderboards.week_bounds("2026-W11")[0] == datetime(2026, 3, 9, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="a week looks like 2026-W10"):
        leaderboards.week_bounds("March")


@dataclass
class Row:
    id: int
    created_at: datetime


OLD = datetime(2026, 1, 1, tzinfo=timezone.utc)
SETTLED_BEFORE = OLD + timedelta(minutes=10)
YOUNG = SETTLED_BEFORE + timedelta(seconds=1)


def test_the_checkpoint_moves_over_contiguous_ids_however_young():
    assert advance_mark(4, [Row(5, YOUNG), Row(6, YOUNG)], SETTLED_BEFORE) == 6


def test_the_checkpoint_waits_at_a_young_gap_it_may_be_an_open_transaction():
    assert advance_mark(4, [Row(5, YOUNG), Row(7, YOUNG), Row(8, OLD)], SETTLED_BEFORE) == 5


def test_the_checkpoint_passes_a_gap_once_the_row_after_it_is_old_enough():
    assert advance_mark(4, [Row(6, OLD), Row(9, OLD), Row(10, YOUNG)], SETTLED_BEFORE) == 10

"""Leaderboards: all-time XP, weekly XP and current streak, in Redis with SQL behind them.

PostgreSQL is the truth and Redis a cache of it (DESIGN.md sections 2 and 8).
The cache is written only from committed data, by the catch-up job
(`schedules/update_leaderboards.py`), never inside a ledger transaction; a
board that is missing, not built yet, or on a Redis that cannot be reached is
read from SQL instead, and the reader is told so (`BoardView.source`).

The boards
    xp      partner.xp, all time.
    weekly  the sum of a partner's ledger amounts whose occurred_at falls in
            one ISO week, weeks counted in UTC: one week for every partner,
            whatever their time zone, so "this week's leaders" is one list
            that starts and ends at the same instant for everybody. A late job
            counts in the week it happened, not the week it arrived.
    streak  partner.checkin_streak, the current streak (streak expiry zeroes
            lost ones).
A partner with a score of 0 or less is not on a board.

The order, identical in Redis and SQL: higher score first, then whoever
reached it first, then the lower partner id. "Reached" is the latest
occurred_at among what the score counts (the partner's ledger rows, that
week's rows, the check-in that made the streak), to the minute: a replay or a
late job changes neither the score nor the moment.

The Redis score holds the first two keys exactly: `rank_score` puts the score
in the high bits and the minute in the low 26 (2**26 minutes from 2000 is
127 years), negated so an ascending ZRANGE lists the best first. A double
holds 53 bits exactly, which leaves scores below 2**27 (134,217,728 XP).
Members are partner ids zero-padded to 19 digits, so the members of one
score, which Redis orders by their bytes, come in id order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import redis
from sqlalchemy import Connection, and_, bindparam, func, or_, select

from rewards import redis_client, rules
from rewards.models import partner, xp_ledger

XP, WEEKLY, STREAK = "xp", "weekly", "streak"
KINDS = (XP, WEEKLY, STREAK)
MAX_ROWS = 1_000
EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
REACHED_BITS = 26
REACHED_MINUTE_MAX = 2**REACHED_BITS - 1
SCORE_MAX = 2**27 - 1
ID_DIGITS = 19
KEY_PREFIX = "rewards:lb:"
CHECKPOINT_KEY = KEY_PREFIX + "checkpoint"
# A weekly board is kept this long after its week ends, then Redis drops it.
WEEKLY_KEPT_DAYS = 14
# Sentinels for the bucket bounds of the earliest and latest minute.
_LONG_AGO = datetime(1, 1, 2, tzinfo=timezone.utc)
_FAR_AHEAD = datetime(9999, 12, 30, tzinfo=timezone.utc)


# -- the order (pure) --------------------------------------------------------------

@dataclass(frozen=True)
class Standing:
    """A partner's place-defining numbers on one board."""

    partner_id: int
    score: int
    reached_at: datetime


def reached_minute(reached_at: datetime) -> int:
    """Whole minutes from 2000-01-01 UTC, clamped into the 26 bits the Redis score holds."""
    minutes = int((reached_at - EPOCH).total_seconds() // 60)
    return min(max(minutes, 0), REACHED_MINUTE_MAX)


def rank_score(score: int, reached_at: datetime) -> int:
    """The Redis score: ascending order is higher score first, then the earlier minute."""
    if not 0 < score <= SCORE_MAX:
        raise ValueError(f"a leaderboard score must be from 1 to {SCORE_MAX}, got {score}")
    return -(score << REACHED_BITS) + reached_minute(reached_at)


def score_of(encoded: float) -> int:
    """The board score back out of a Redis score."""
    return (-int(encoded) + REACHED_MINUTE_MAX) >> REACHED_BITS


def sort_key(standing: Standing) -> tuple[int, int]:
    """The whole order as a tuple, the same one Redis keeps (score, then member bytes)."""
    return rank_score(standing.score, standing.reached_at), standing.partner_id


def member(partner_id: int) -> str:
    return f"{partner_id:0{ID_DIGITS}d}"


def bucket_bounds(reached_at: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the minute `reached_at` counts in, with the clamped ends open."""
    minute = reached_minute(reached_at)
    start = EPOCH + timedelta(minutes=minute) if minute > 0 else _LONG_AGO
    end = EPOCH + timedelta(minutes=minute + 1) if minute < REACHED_MINUTE_MAX else _FAR_AHEAD
    return start, end


def week_of(instant: datetime) -> str:
    """The ISO week (UTC) an instant falls in, e.g. '2026-W10'."""
    return rules.iso_week(instant.astimezone(timezone.utc).date())


def week_bounds(week: str) -> tuple[datetime, datetime]:
    """[Monday 00:00 UTC, next Monday 00:00 UTC) of an ISO week like '2026-W10'."""
    try:
        year, number = week.split("-W")
        monday = date.fromisocalendar(int(year), int(number), 1)
    except ValueError:
        raise ValueError(f"a week looks like 2026-W10, got {week!r}") from None
    start = datetime(monday.year, monday.month, monday.day, tzinfo=timezone.utc)
    return start, start + timedelta(days=7)


@dataclass(frozen=True)
class Board:
    kind: str
    week: str | None = None  # weekly boards only

    @property
    def key(self) -> str:
        return KEY_PREFIX + (f"{WEEKLY}:{self.week}" if self.kind == WEEKLY else self.kind)

    @property
    def title(self) -> str:
        return {XP: "all-time XP", STREAK: "current streak"}.get(self.kind, f"XP in week {self.week} (UTC)")


def board(kind: str, now: datetime, week: str | None = None) -> Board:
    """The board of `kind`; a weekly one is `week`'s, by default the week of `now`."""
    if kind not in KINDS:
        raise ValueError(f"a leaderboard is one of {', '.join(KINDS)}, got {kind!r}")
    if kind != WEEKLY:
        return Board(kind)
    if week is not None:
        week_bounds(week)  # refuse a malformed week early
    return Board(WEEKLY, week or week_of(now))


# -- standings from SQL ------------------------------------------------------------

_ids = bindparam("ids", expanding=True)
_last_movement = (
    select(func.max(xp_ledger.c.occurred_at)).where(xp_ledger.c.partner_id == partner.c.id).scalar_subquery()
)
_xp_columns = (partner.c.id, partner.c.xp.label("score"), _last_movement.label("reached_at"))
_streak_columns = (partner.c.id, partner.c.checkin_streak.label("score"),
                   partner.c.last_checkin_at.label("reached_at"))
_week_sum = func.sum(xp_ledger.c.amount)
_weekly_columns = (xp_ledger.c.partner_id.label("id"), _week_sum.label("score"),
                   func.max(xp_ledger.c.occurred_at).label("reached_at"))
_in_week = and_(xp_ledger.c.occurred_at >= bindparam("week_start"), xp_ledger.c.occurred_at < bindparam("week_end"))

_STANDINGS_OF = {
    XP: select(*_xp_columns).where(partner.c.id.in_(_ids), partner.c.xp > 0),
    STREAK: select(*_streak_columns).where(partner.c.id.in_(_ids), partner.c.checkin_streak > 0),
    WEEKLY: (select(*_weekly_columns).where(xp_ledger.c.partner_id.in_(_ids), _in_week)
             .group_by(xp_ledger.c.partner_id).having(_week_sum > 0)),
}
_ALL_STANDINGS = {
    XP: select(*_xp_columns).where(partner.c.xp > 0).order_by(partner.c.id),
    STREAK: select(*_streak_columns).where(partner.c.checkin_streak > 0).order_by(partner.c.id),
    WEEKLY: (select(*_weekly_columns).where(_in_week).group_by(xp_ledger.c.partner_id)
             .having(_week_sum > 0).order_by(xp_ledger.c.partner_id)),
}
# IN lists stay below SQLite's and psycopg's parameter limits.
_IDS_PER_STATEMENT = 5_000


def _params(board_: Board) -> dict:
    if board_.kind != WEEKLY:
        return {}
    start, end = week_bounds(board_.week)
    return {"week_start": start, "week_end": end}


def _standing(row) -> Standing:
    return Standing(int(row.id), int(row.score), row.reached_at)


def standings_of(conn: Connection, board_: Board, partner_ids: Iterable[int]) -> dict[int, Standing]:
    """The standings of these partners on the board; partners not on it are left out."""
    ids = sorted(set(partner_ids))
    found: dict[int, Standing] = {}
    for start in range(0, len(ids), _IDS_PER_STATEMENT):
        params = {"ids": ids[start:start + _IDS_PER_STATEMENT], **_params(board_)}
        for row in conn.execute(_STANDINGS_OF[board_.kind], params):
            found[int(row.id)] = _standing(row)
    return found


def all_standings(conn: Connection, board_: Board) -> Iterator[Standing]:
    """Every standing on the board, by partner id, streamed (rebuild and reconcile)."""
    streaming = conn.execution_options(stream_results=True, yield_per=10_000)
    for row in streaming.execute(_ALL_STANDINGS[board_.kind], _params(board_)):
        yield _standing(row)


# -- reads -------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    rank: int
    partner_id: int
    score: int


@dataclass(frozen=True)
class BoardView:
    board: Board
    entries: list[Entry]
    source: str  # "redis" or "sql"
    # Why SQL answered when Redis was meant to; None when Redis answered or none is configured.
    fallback_reason: str | None = None


class NotBuilt(Exception):
    """Redis answers, but the leaderboards were never built there (or were lost)."""


REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, NotBuilt)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_ROWS:
        raise ValueError(f"limit must be from 1 to {MAX_ROWS}, got {limit}")


def top(conn: Connection, board_: Board, limit: int = 10, *, store: redis.Redis | None = None) -> BoardView:
    """The best `limit` partners of the board, from Redis when it can answer, else from SQL."""
    _check_limit(limit)
    return _read(board_, store, lambda: _redis_top(store, board_, limit), lambda: sql_top(conn, board_, limit))


def around(conn: Connection, board_: Board, partner_id: int, radius: int = 5, *,
           store: redis.Redis | None = None) -> BoardView:
    """The partner and up to `radius` partners either side; no entries when they are not on it."""
    _check_limit(2 * radius + 1)
    return _read(board_, store, lambda: _redis_around(store, board_, partner_id, radius),
                 lambda: sql_around(conn, board_, partner_id, radius))


def rank_of(conn: Connection, board_: Board, partner_id: int, *,
            store: redis.Redis | None = None) -> tuple[Entry | None, BoardView]:
    """The partner's rank and score (None when not on the board), and where it was read."""
    view = around(conn, board_, partner_id, 0, store=store)
    return (view.entries[0] if view.entries else None), view


def _read(board_: Board, store: redis.Redis | None, from_redis, from_sql) -> BoardView:
    if store is None:
        return BoardView(board_, from_sql(), "sql")
    try:
        return BoardView(board_, from_redis(), "redis")
    except REDIS_ERRORS as error:
        reason = str(error) if isinstance(error, NotBuilt) else f"Redis is unavailable ({error})"
        return BoardView(board_, from_sql(), "sql", reason)


def _require_built(store: redis.Redis, board_: Board) -> None:
    if not store.exists(CHECKPOINT_KEY):
        raise NotBuilt("the Redis leaderboards are not built yet; run: rewards leaderboard rebuild")
    # Redis keeps this week's and last week's boards only (and none for a week nobody scored in).
    if board_.kind == WEEKLY and not store.exists(board_.key):
        raise NotBuilt(f"Redis holds no board for week {board_.week}")


def _entries(rows: list[tuple[bytes, float]], first_rank: int) -> list[Entry]:
    return [Entry(first_rank + offset, int(name), score_of(encoded))
            for offset, (name, encoded) in enumerate(rows)]


def _redis_top(store: redis.Redis, board_: Board, limit: int) -> list[Entry]:
    _require_built(store, board_)
    return _entries(store.zrange(board_.key, 0, limit - 1, withscores=True), 1)


def _redis_around(store: redis.Redis, board_: Board, partner_id: int, radius: int) -> list[Entry]:
    _require_built(store, board_)
    index = store.zrank(board_.key, member(partner_id))
    if index is None:
        return []
    first = max(0, index - radius)
    return _entries(store.zrange(board_.key, first, index + radius, withscores=True), first + 1)


def _ranked(standings: list[Standing], first_rank: int) -> list[Entry]:
    return [Entry(first_rank + offset, s.partner_id, s.score) for offset, s in enumerate(standings)]


# -- the SQL board -----------------------------------------------------------------
# xp and streak keep their score in a partner column with an index (the
# leading column of ix_partner_xp_board / ix_partner_streak_board), so the top,
# a rank and a neighbourhood are index ranges; the order inside one score is
# then finished with sort_key, the very key Redis holds. The weekly score is a
# sum, so its SQL board aggregates the week (ix_xp_ledger_occurred_at).

@dataclass(frozen=True)
class _ColumnBoard:
    top_scores: object
    ids_between: object
    nearest_above: object
    nearest_below: object
    count_above: object
    count_tied_ahead: object


def _column_board(score, reached) -> _ColumnBoard:
    on_board = score > 0
    return _ColumnBoard(
        top_scores=select(score).where(on_board).order_by(score.desc()).limit(bindparam("limit")),
        ids_between=select(partner.c.id).where(score.between(bindparam("low"), bindparam("high")), on_board),
        nearest_above=select(score).where(score > bindparam("score")).order_by(score.asc())
        .limit(bindparam("limit")),
        nearest_below=select(score).where(score < bindparam("score"), on_board).order_by(score.desc())
        .limit(bindparam("limit")),
        count_above=select(func.count()).select_from(partner).where(score > bindparam("score")),
        count_tied_ahead=select(func.count()).select_from(partner).where(
            score == bindparam("score"),
            or_(reached < bindparam("bucket_start"),
                and_(reached < bindparam("bucket_end"), partner.c.id < bindparam("partner_id")))),
    )


_COLUMN_BOARDS = {
    XP: _column_board(partner.c.xp, _last_movement),
    STREAK: _column_board(partner.c.checkin_streak, partner.c.last_checkin_at),
}


def sql_top(conn: Connection, board_: Board, limit: int) -> list[Entry]:
    """The top of the board from SQL, in the order Redis keeps."""
    if board_.kind == WEEKLY:
        return _ranked(heapq.nsmallest(limit, all_standings(conn, board_), key=sort_key), 1)
    queries = _COLUMN_BOARDS[board_.kind]
    scores = conn.execute(queries.top_scores, {"limit": limit}).scalars().all()
    if not scores:
        return []
    # Everyone tied with the last score shown competes for the last places.
    ids = conn.execute(queries.ids_between, {"low": scores[-1], "high": SCORE_MAX}).scalars().all()
    ordered = sorted(standings_of(conn, board_, ids).values(), key=sort_key)
    return _ranked(ordered[:limit], 1)


def sql_rank(conn: Connection, board_: Board, standing: Standing) -> int:
    """1 + the partners ahead of `standing`: those with a higher score, then those ahead on the tie."""
    if board_.kind == WEEKLY:
        mine = sort_key(standing)
        return 1 + sum(1 for other in all_standings(conn, board_) if sort_key(other) < mine)
    queries = _COLUMN_BOARDS[board_.kind]
    start, end = bucket_bounds(standing.reached_at)
    above = conn.execute(queries.count_above, {"score": standing.score}).scalar_one()
    tied = conn.execute(queries.count_tied_ahead, {
        "score": standing.score, "bucket_start": start, "bucket_end": end, "partner_id": standing.partner_id,
    }).scalar_one()
    return 1 + above + tied


def sql_around(conn: Connection, board_: Board, partner_id: int, radius: int) -> list[Entry]:
    """The partner and `radius` partners either side, from SQL; empty when not on the board."""
    mine = standings_of(conn, board_, [partner_id]).get(partner_id)
    if mine is None:
        return []
    if board_.kind == WEEKLY:
        ordered = sorted(all_standings(conn, board_), key=sort_key)
        index = ordered.index(mine)
        first = max(0, index - radius)
        return _ranked(ordered[first:index + radius + 1], first + 1)
    rank = sql_rank(conn, board_, mine)
    neighbours = _neighbours(conn, board_, mine, radius)
    index = neighbours.index(mine)
    first = max(0, index - radius)
    return _ranked(neighbours[first:index + radius + 1], rank - (index - first))


def _neighbours(conn: Connection, board_: Board, mine: Standing, radius: int) -> list[Standing]:
    """Every partner whose score lies between the `radius` nearest distinct scores either side, ordered."""
    queries = _COLUMN_BOARDS[board_.kind]
    params = {"score": mine.score, "limit": radius}
    above = conn.execute(queries.nearest_above, params).scalars().all() if radius else []
    below = conn.execute(queries.nearest_below, params).scalars().all() if radius else []
    ids = conn.execute(queries.ids_between, {"low": min(below, default=mine.score),
                                             "high": max(above, default=mine.score)}).scalars().all()
    return sorted(standings_of(conn, board_, ids).values(), key=sort_key)


def store_from_settings(timeout_s: float = 0.5) -> redis.Redis | None:
    """The Redis of REWARDS_REDIS_URL, or None when leaderboards are served from SQL only.

    Readers keep the short default: they wait half a second for Redis at
    most before answering from SQL. Writers (catch-up, rebuild) pass longer.
    """
    from rewards import settings as settings_module

    url = settings_module.get().redis_url
    if url is None:
        return None
    return redis_client.connect(url, timeout_s=timeout_s)

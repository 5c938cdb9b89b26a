"""rewards.maintenance.update_leaderboards: bring the Redis leaderboards up to the committed ledger (every 5 s).

The change feed is two tables read by id: `xp_ledger` (every XP movement, so
the xp and weekly boards, and the check-ins that move streaks) and `outbox`'s
`streak.lost` events (the streak expiry's resets). For every partner in a
batch the job reads the partner's standing as committed now and writes it to
Redis (ZADD, or ZREM when no longer on the board) in one MULTI together with
the new feed checkpoint. Writing absolute standings makes a repeated batch
harmless, so a crash between commit and update loses nothing: the next run
reads the same rows again.

The checkpoint lives in Redis next to the boards (`rewards:lb:checkpoint`):
a Redis that lost its data has lost the checkpoint too, and the next run
rebuilds the boards from PostgreSQL instead of patching an empty cache.

Ids are handed out before commit, so a smaller id can become visible after a
larger one. The checkpoint therefore only passes a gap in the ids once the row
after it is older than `lag_s` (two job time limits: by then the transaction
that took the missing id has committed or rolled back); rows after a young gap
are read again next run, which costs a re-read and nothing else.

`rebuild` builds every board from one PostgreSQL snapshot under temporary
keys and renames them over the live ones in one MULTI, with the checkpoint of
that snapshot; `drift` compares Redis with PostgreSQL board by board.

What a run costs: the feed rows since the checkpoint, read by primary key,
at most `max_batches` batches in all; the checkpoint moves with every batch
(waiting only at a gap younger than `lag_s`), so a run that stops at its limit leaves the rest to the next, and a
run never reads rows older than the checkpoint (a rebuild, only when Redis
lost it, reads every partner on the boards once).
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from sqlalchemy import Connection, Engine, Table, bindparam, select

from rewards import contract, db, leaderboards
from rewards.leaderboards import Board, Standing
from rewards.ledger import outbox as outbox_module
from rewards.models import outbox, xp_ledger
from schedules.runner import Summary, run_exclusively

JOB = contract.MAINTENANCE_UPDATE_LEADERBOARDS
LEDGER, OUTBOX = "ledger_id", "outbox_id"
REBUILD_CHUNK = 10_000
EXAMPLES_KEPT = 10


def _feed(table: Table, *columns):
    return (select(table.c.id, table.c.created_at, table.c.partner_id, *columns)
            .where(table.c.id > bindparam("after")).order_by(table.c.id).limit(bindparam("limit")))


_ledger_feed = _feed(xp_ledger, xp_ledger.c.occurred_at)
_outbox_feed = _feed(outbox, outbox.c.event_type)


def _tail(table: Table):
    return (select(table.c.id, table.c.created_at).where(table.c.id < bindparam("before"))
            .order_by(table.c.id.desc()).limit(bindparam("limit")))


_TAILS = {LEDGER: _tail(xp_ledger), OUTBOX: _tail(outbox)}
_TABLES = {LEDGER: xp_ledger, OUTBOX: outbox}


def lag_s(settings) -> int:
    """How old the row after a gap must be before the gap counts as a rolled-back id.

    A transaction that took the missing id had begun before the later row
    was inserted, and that insert came at most one job time limit after its
    own job began (created_at): two time limits cover both.
    """
    return 2 * settings.task_time_limit_s


def advance_mark(mark: int, rows: Iterable, settled_before: datetime) -> int:
    """How far the checkpoint may move over `rows` (ordered by id) without skipping an open transaction.

    Contiguous ids are all committed. A gap may be a transaction still open,
    unless the row after it was created before `settled_before`, in which
    case whatever took the missing id has finished (committed rows are
    visible, rolled-back ones never will be).
    """
    for row in rows:
        if row.id != mark + 1 and row.created_at >= settled_before:
            break
        mark = row.id
    return mark


def kept_weeks(now: datetime) -> tuple[str, str]:
    """The weekly boards kept up to date: this week's and last week's (UTC)."""
    return leaderboards.week_of(now), leaderboards.week_of(now - timedelta(days=7))


# -- catch-up ----------------------------------------------------------------------

def run(engine: Engine, store: redis.Redis, now: datetime, *, batch_size: int, lag_s: int,
        max_batches: int = 1_000) -> Summary:
    """Apply the committed feed since the checkpoint; rebuild instead when there is none."""
    return run_exclusively(engine, JOB, now, lambda summary: _catch_up(engine, store, now, batch_size,
                                                                       lag_s, max_batches, summary))


def _catch_up(engine: Engine, store: redis.Redis, now: datetime, batch_size: int, lag_s: int,
              max_batches: int, summary: Summary) -> None:
    marks = store.hgetall(leaderboards.CHECKPOINT_KEY)
    if not marks:
        summary.details["rebuilt"] = True
        _rebuild(engine, store, now, lag_s, summary)
        return
    settled_before = now - timedelta(seconds=lag_s)
    weeks = kept_weeks(now)
    for name in (LEDGER, OUTBOX):
        _walk(engine, store, name, int(marks.get(name.encode(), 0)), settled_before, weeks,
              batch_size, max_batches, summary)


def _walk(engine: Engine, store: redis.Redis, name: str, mark: int, settled_before: datetime,
          weeks: tuple[str, ...], batch_size: int, max_batches: int, summary: Summary) -> None:
    feed = _ledger_feed if name == LEDGER else _outbox_feed
    after = mark  # reading goes on past a young gap; the checkpoint waits at it
    while summary.batches < max_batches:
        with engine.connect() as conn:
            rows = conn.execute(feed, {"after": after, "limit": batch_size}).fetchall()
            if not rows:
                return
            summary.batches += 1
            summary.examined += len(rows)
            touched = _touched(name, rows, weeks)
            standings = {board: (leaderboards.standings_of(conn, board, ids), ids)
                         for board, ids in touched.items()}
        mark = advance_mark(mark, rows, settled_before)
        summary.changed += apply(store, standings, checkpoint={name: mark}, now=settled_before)
        if len(rows) < batch_size:
            return
        after = rows[-1].id
    summary.more = True


def _touched(name: str, rows, weeks: tuple[str, ...]) -> dict[Board, set[int]]:
    """The boards a batch of feed rows may have changed, and whose standings on them."""
    touched: dict[Board, set[int]] = defaultdict(set)
    for row in rows:
        if row.partner_id is None:
            continue
        if name == OUTBOX:
            if row.event_type == outbox_module.STREAK_LOST:
                touched[Board(leaderboards.STREAK)].add(row.partner_id)
            continue
        touched[Board(leaderboards.XP)].add(row.partner_id)
        touched[Board(leaderboards.STREAK)].add(row.partner_id)
        week = leaderboards.week_of(row.occurred_at)
        if week in weeks:  # older weeks are history: a rebuild is what revisits them
            touched[Board(leaderboards.WEEKLY, week)].add(row.partner_id)
    return touched


def apply(store: redis.Redis, standings: dict[Board, tuple[dict[int, Standing], set[int]]], *,
          checkpoint: dict[str, int], now: datetime) -> int:
    """Write the standings asked for (ZADD, or ZREM for those now off a board) and the checkpoint, atomically."""
    pipe = store.pipeline(transaction=True)
    written = 0
    for board_, (found, asked) in standings.items():
        if found:
            pipe.zadd(board_.key, {leaderboards.member(s.partner_id): leaderboards.rank_score(s.score, s.reached_at)
                                   for s in found.values()})
        gone = [leaderboards.member(partner_id) for partner_id in asked - found.keys()]
        if gone:
            pipe.zrem(board_.key, *gone)
        if board_.kind == leaderboards.WEEKLY:
            pipe.expire(board_.key, _weekly_ttl_s(board_, now))
        written += len(asked)
    pipe.hset(leaderboards.CHECKPOINT_KEY, mapping=checkpoint)
    pipe.execute()
    return written


def _weekly_ttl_s(board_: Board, now: datetime) -> int:
    """Seconds until a weekly board may go: WEEKLY_KEPT_DAYS after its week ends, a day at least.

    Relative to the run's own `now`, so a run replayed for a past instant
    does not hand Redis a deadline that has already passed.
    """
    ends = leaderboards.week_bounds(board_.week)[1] + timedelta(days=leaderboards.WEEKLY_KEPT_DAYS)
    return max(86_400, int((ends - now).total_seconds()))


# -- rebuild -----------------------------------------------------------------------

def rebuild(engine: Engine, store: redis.Redis, now: datetime, *, lag_s: int) -> Summary:
    """Rebuild every board from PostgreSQL, under the catch-up job's lock."""
    return run_exclusively(engine, JOB, now, lambda summary: _rebuild(engine, store, now, lag_s, summary))


def boards_kept(now: datetime) -> list[Board]:
    return [Board(leaderboards.XP), Board(leaderboards.STREAK),
            *(Board(leaderboards.WEEKLY, week) for week in kept_weeks(now))]


def _rebuild(engine: Engine, store: redis.Redis, now: datetime, lag_s: int, summary: Summary) -> None:
    token = secrets.token_hex(4)
    built: dict[Board, str] = {}
    counts: dict[str, int] = {}
    try:
        # One snapshot for every board and the checkpoint, so the catch-up
        # that follows starts exactly where the boards were read.
        with db.snapshot_transaction(engine) as conn:
            marks = {name: settled_mark(conn, name, now - timedelta(seconds=lag_s)) for name in (LEDGER, OUTBOX)}
            for board_ in boards_kept(now):
                built[board_] = f"{board_.key}:rebuild:{token}"
                counts[board_.key] = _fill(store, built[board_], leaderboards.all_standings(conn, board_))
        _swap(store, built, marks, now)
    finally:
        if built:  # renamed keys are gone already; this drops the ones a failure left
            store.delete(*built.values())
    summary.examined = sum(counts.values())
    summary.changed = summary.examined
    summary.details["boards"] = counts


def settled_mark(conn: Connection, name: str, settled_before: datetime) -> int:
    """The largest id below which every transaction has ended: that of the newest row older than the lag."""
    before = 2**63 - 1
    while True:
        rows = conn.execute(_TAILS[name], {"before": before, "limit": 1_000}).fetchall()
        if not rows:
            return 0
        for row in rows:
            if row.created_at < settled_before:
                return row.id
        before = rows[-1].id


def _fill(store: redis.Redis, key: str, standings: Iterable[Standing]) -> int:
    count = 0
    chunk: dict[str, int] = {}
    for standing in standings:
        chunk[leaderboards.member(standing.partner_id)] = leaderboards.rank_score(standing.score,
                                                                                  standing.reached_at)
        if len(chunk) == REBUILD_CHUNK:
            count += store.zadd(key, chunk)
            chunk = {}
    if chunk:
        count += store.zadd(key, chunk)
    return count


def _swap(store: redis.Redis, built: dict[Board, str], marks: dict[str, int], now: datetime) -> None:
    """Put the new boards and their checkpoint live in one MULTI: readers see all old or all new."""
    present = {key for key, exists in zip(built.values(), _exist(store, built.values())) if exists}
    pipe = store.pipeline(transaction=True)
    for board_, temporary in built.items():
        if temporary in present:
            pipe.rename(temporary, board_.key)
        else:
            pipe.delete(board_.key)  # nobody on it: an empty board is no key
        if board_.kind == leaderboards.WEEKLY and temporary in present:
            pipe.expire(board_.key, _weekly_ttl_s(board_, now))
    pipe.delete(leaderboards.CHECKPOINT_KEY)
    pipe.hset(leaderboards.CHECKPOINT_KEY, mapping=marks)
    pipe.execute()


def _exist(store: redis.Redis, keys: Iterable[str]) -> list[bool]:
    pipe = store.pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    return [bool(found) for found in pipe.execute()]


# -- drift -------------------------------------------------------------------------

@dataclass
class Drift:
    """How one Redis board differs from PostgreSQL."""

    board: Board
    in_sql: int = 0
    in_redis: int = 0
    missing: int = 0   # on the SQL board, not in Redis
    wrong: int = 0     # in both, with another score or tie-break minute
    extra: int = 0     # in Redis, not on the SQL board
    examples: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.wrong or self.extra)

    def note(self, example: str) -> None:
        if len(self.examples) < EXAMPLES_KEPT:
            self.examples.append(example)


def drift(engine: Engine, store: redis.Redis, now: datetime, *, batch_size: int, lag_s: int) -> list[Drift]:
    """Catch up, then compare every kept board with PostgreSQL; found drift is real, not lag."""
    found: list[Drift] = []

    def compare(summary: Summary) -> None:
        _catch_up(engine, store, now, batch_size, lag_s, 1_000_000, summary)
        with db.snapshot_transaction(engine) as conn:
            found.extend(_compare(conn, store, board_) for board_ in boards_kept(now))

    summary = run_exclusively(engine, JOB, now, compare)
    if summary.skipped:
        raise RuntimeError(f"another leaderboard update holds the lock ({summary.skipped}); try again")
    return found


def _compare(conn: Connection, store: redis.Redis, board_: Board) -> Drift:
    result = Drift(board_, in_redis=store.zcard(board_.key))
    chunk: list[Standing] = []
    for standing in leaderboards.all_standings(conn, board_):
        chunk.append(standing)
        if len(chunk) == REBUILD_CHUNK:
            _compare_chunk(store, board_, chunk, result)
            chunk = []
    if chunk:
        _compare_chunk(store, board_, chunk, result)
    matched = result.in_sql - result.missing
    result.extra = result.in_redis - matched
    return result


def _compare_chunk(store: redis.Redis, board_: Board, chunk: list[Standing], result: Drift) -> None:
    result.in_sql += len(chunk)
    cached = store.zmscore(board_.key, [leaderboards.member(s.partner_id) for s in chunk])
    for standing, encoded in zip(chunk, cached, strict=True):
        expected = leaderboards.rank_score(standing.score, standing.reached_at)
        if encoded is None:
            result.missing += 1
            result.note(f"partner {standing.partner_id} missing (score {standing.score})")
        elif int(encoded) != expected:
            result.wrong += 1
            result.note(f"partner {standing.partner_id}: Redis {leaderboards.score_of(encoded)}, "
                        f"PostgreSQL {standing.score}")

"""The Redis leaderboards against the real Redis (REWARDS_REDIS_URL) and PostgreSQL.

Each test starts from an empty leaderboard database and the known month of
tests/support/read_side_data.py; Redis must always tell the same story as
the SQL board.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from sqlalchemy import text

from rewards import contract, db, leaderboards
from rewards import settings as settings_module
from rewards.cli.main import main
from schedules import expire_streaks, update_leaderboards
from chaos.servers import free_port
from tests.support import read_side_data as data
from tests.support.jobs import run

LAG_S = 120
LATER = data.NOW + timedelta(hours=1)  # every row of the month has settled by then


@pytest.fixture
def store():
    current = settings_module.get()
    assert current.redis_url, "set REWARDS_REDIS_URL (make test does) to run the Redis leaderboard tests"
    assert current.redis_url not in (current.broker_url, current.result_backend)
    client = redis.Redis.from_url(current.redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def catch_up(store, now=LATER) -> update_leaderboards.Summary:
    summary = update_leaderboards.run(db.get_engine(), store, now, batch_size=7, lag_s=LAG_S)
    assert summary.skipped is None
    return summary


def boards() -> list[leaderboards.Board]:
    return update_leaderboards.boards_kept(data.NOW)


def assert_redis_matches_sql(store) -> None:
    engine = db.get_engine()
    with engine.connect() as conn:
        for board in boards():
            cached = leaderboards.top(conn, board, 100, store=store)
            assert cached.source == "redis", cached.fallback_reason
            assert cached.entries == leaderboards.sql_top(conn, board, 100), board
            for entry in cached.entries:
                assert leaderboards.around(conn, board, entry.partner_id, 2, store=store).entries == \
                    leaderboards.sql_around(conn, board, entry.partner_id, 2)
    assert update_leaderboards.drift(engine, store, LATER, batch_size=50, lag_s=LAG_S) and all(
        found.clean for found in update_leaderboards.drift(engine, store, LATER, batch_size=50, lag_s=LAG_S))


def test_the_first_run_builds_every_board_from_postgresql_and_redis_then_ranks_as_sql_does(store):
    data.populate(db.get_engine())
    summary = catch_up(store)
    assert summary.details["rebuilt"] is True
    assert summary.details["boards"] == {"rewards:lb:xp": 7, "rewards:lb:streak": 5,
                                         "rewards:lb:weekly:2026-W11": 5, "rewards:lb:weekly:2026-W10": 6}
    assert_redis_matches_sql(store)
    with db.get_engine().connect() as conn:
        entry, view = leaderboards.rank_of(conn, leaderboards.board("xp", data.NOW), 3, store=store)
    assert (entry.rank, entry.score, view.source) == (3, 230, "redis")
    with db.get_engine().connect() as conn:  # an older week than Redis keeps is summed in SQL
        old = leaderboards.top(conn, leaderboards.board("weekly", data.NOW, "2026-W09"), 5, store=store)
    assert (old.entries, old.source, old.fallback_reason) == ([], "sql", "Redis holds no board for week 2026-W09")


def test_rows_committed_while_no_update_ran_are_applied_by_the_next_run(store):
    catch_up(store)  # builds empty boards and the checkpoint
    data.populate(db.get_engine())  # commits; nothing touches Redis
    summary = catch_up(store)
    assert summary.examined > 0 and not summary.details.get("rebuilt")
    assert_redis_matches_sql(store)
    marks = store.hgetall(leaderboards.CHECKPOINT_KEY)
    with db.get_engine().connect() as conn:
        assert int(marks[b"ledger_id"]) == conn.execute(text("SELECT MAX(id) FROM xp_ledger")).scalar_one()


def test_an_update_applied_again_from_an_older_checkpoint_changes_nothing(store):
    catch_up(store)
    data.populate(db.get_engine())
    catch_up(store)
    before = {board.key: store.zrange(board.key, 0, -1, withscores=True) for board in boards()}
    # A run that died after writing the boards but before its checkpoint: the next one reads it all again.
    store.hset(leaderboards.CHECKPOINT_KEY, mapping={"ledger_id": 0, "outbox_id": 0})
    catch_up(store)
    assert {board.key: store.zrange(board.key, 0, -1, withscores=True) for board in boards()} == before


def test_streak_expiry_takes_lost_streaks_off_the_redis_board(store):
    data.populate(db.get_engine())
    catch_up(store)
    eleventh = data.NOW + timedelta(days=1)  # regular partners who last came on 9 March lose their streak
    assert expire_streaks.run(db.get_engine(), eleventh, batch_size=3).changed == 4
    catch_up(store, eleventh + timedelta(hours=1))
    with db.get_engine().connect() as conn:
        view = leaderboards.top(conn, leaderboards.Board("streak"), 10, store=store)
    assert [(e.partner_id, e.score) for e in view.entries] == [(8, 6)]  # PRO: the freeze keeps 8's alive
    assert view.source == "redis"


def test_reconcile_reports_drift_and_a_rebuild_repairs_it_by_renaming_whole_boards(store, capsys):
    data.populate(db.get_engine())
    catch_up(store)
    store.zadd("rewards:lb:xp", {leaderboards.member(999): -5})
    store.zadd("rewards:lb:xp", {leaderboards.member(2): leaderboards.rank_score(1, data.NOW)})
    store.zrem("rewards:lb:streak", leaderboards.member(1))
    found = {d.board.kind + (d.board.week or ""): d for d in update_leaderboards.drift(
        db.get_engine(), store, LATER, batch_size=50, lag_s=LAG_S)}
    assert (found["xp"].extra, found["xp"].wrong, found["xp"].missing) == (1, 1, 0)
    assert (found["streak"].missing, found["streak"].in_sql, found["streak"].in_redis) == (1, 5, 4)
    assert found["weekly2026-W11"].clean

    assert main(["leaderboard", "reconcile"]) == 1
    assert "rewards leaderboard rebuild" in capsys.readouterr().out
    update_leaderboards.rebuild(db.get_engine(), store, LATER, lag_s=LAG_S)
    assert not list(store.scan_iter("*:rebuild:*"))
    assert_redis_matches_sql(store)


def test_a_redis_that_lost_its_data_is_rebuilt_by_the_next_run(store):
    data.populate(db.get_engine())
    catch_up(store)
    store.flushdb()
    assert catch_up(store).details["rebuilt"] is True
    assert_redis_matches_sql(store)



def test_without_redis_the_board_is_read_from_sql_and_says_why(store):
    data.populate(db.get_engine())
    gone = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
    xp = leaderboards.board("xp", data.NOW)
    with db.get_engine().connect() as conn:
        down = leaderboards.top(conn, xp, 3, store=gone)
        not_built = leaderboards.top(conn, xp, 3, store=store)
    assert down.source == not_built.source == "sql"
    assert [(e.partner_id, e.score) for e in down.entries] == data.XP_BOARD[:3]
    assert down.fallback_reason.startswith("Redis is unavailable")
    assert "rewards leaderboard rebuild" in not_built.fallback_reason


def test_the_cli_prints_a_partners_neighbourhood_from_redis_and_rebuilds(store, capsys):
    data.populate(db.get_engine())
    assert main(["leaderboard", "rebuild"]) == 0
    assert "rewards:lb:xp" in capsys.readouterr().out
    assert main(["leaderboard", "xp", "--around", "3", "--radius", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "all-time XP (read from Redis)"
    assert [line.split() for line in lines[3:]] == [["2", "1", "230"], ["3", "3", "230", "◀"], ["4", "2", "200"]]


def test_the_update_job_runs_on_the_worker_and_reports_what_it_did(client, store):
    data.populate(db.get_engine())
    first = run(client, contract.MAINTENANCE_UPDATE_LEADERBOARDS, now=LATER.isoformat())
    second = run(client, contract.MAINTENANCE_UPDATE_LEADERBOARDS, now=LATER.isoformat())
    assert first["rebuilt"] is True and first["boards"]["rewards:lb:xp"] == 7
    assert second["skipped"] is None and "rebuilt" not in second
    assert_redis_matches_sql(store)

"""Failure records that outlive PostgreSQL, re-driving them, and outcomes looked up by key."""

import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest
import redis
from sqlalchemy import text

from rewards import contract, deadletters
from rewards import settings as settings_module
from rewards.cli.main import main
from tests.support.jobs import RESULT_TIMEOUT_S, adjust, at, checkin
from workers.base import record_failure_anywhere


@pytest.fixture
def dead_letter_url():
    url = settings_module.get().dead_letter_url
    redis.Redis.from_url(url).delete(deadletters.HASH_KEY)
    yield url
    redis.Redis.from_url(url).delete(deadletters.HASH_KEY)


def keep_dead_letter(url: str, partner_id: int) -> None:
    deadletters.push(url, deadletters.DeadLetter.new(
        task_name=contract.CHECKIN, job_id="job-1", payload={"partner_id": partner_id, "occurred_at": at(0)},
        reason="retries_exhausted", error="OperationalError: connection refused",
        now=datetime(2026, 3, 2, 12, tzinfo=timezone.utc)))


def test_a_failure_recorded_outside_the_database_goes_to_redis_not_postgresql(conn, dead_letter_url):
    record_failure_anywhere(contract.CHECKIN, "job-9", {"partner_id": 9}, "error", RuntimeError("boom"),
                            in_database=False)
    [letter] = deadletters.pending(dead_letter_url)
    assert (letter.task_name, letter.reason, letter.error) == (contract.CHECKIN, "error", "RuntimeError: boom")
    assert conn.execute(text("SELECT COUNT(*) FROM job_failure")).scalar() == 0


def test_failures_list_moves_dead_letters_into_job_failure_and_shows_them(conn, dead_letter_url, capsys):
    keep_dead_letter(dead_letter_url, 901)
    assert main(["failures", "list"]) == 0
    out = capsys.readouterr().out
    assert "moved 1 dead letter from Redis into job_failure" in out
    assert "rewards.checkin" in out and "retries_exhausted" in out
    assert deadletters.pending(dead_letter_url) == []
    assert conn.execute(text("SELECT reason FROM job_failure")).scalar_one() == "retries_exhausted"


def redrive_all_as_owner() -> str:
    """`rewards failures retry --all` as an operator runs it: a process of its own, with the owner's URL
    (the suite's worker role may not remove failure rows); returns the id the job was sent again as."""
    env = os.environ | {"REWARDS_DATABASE_URL": os.environ["REWARDS_TEST_ADMIN_DATABASE_URL"]}
    done = subprocess.run([sys.executable, "-m", "rewards.cli", "failures", "retry", "--all"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("sent again as job ")[1].strip()


def test_a_redriven_failure_is_applied_once_and_a_second_redrive_is_a_duplicate(client, conn, dead_letter_url):
    keep_dead_letter(dead_letter_url, 902)
    sent_as = redrive_all_as_owner()
    assert client.app.AsyncResult(sent_as).get(timeout=RESULT_TIMEOUT_S)["status"] == "applied"
    assert conn.execute(text("SELECT COUNT(*) FROM job_failure")).scalar() == 0
    assert conn.execute(text(
        "SELECT COUNT(*) FROM audit_event WHERE event_type = 'job_failure.redriven'")).scalar() == 1

    keep_dead_letter(dead_letter_url, 902)
    sent_as = redrive_all_as_owner()
    assert client.app.AsyncResult(sent_as).get(timeout=RESULT_TIMEOUT_S)["status"] == "duplicate"
    assert conn.execute(text("SELECT xp FROM partner WHERE id = 902")).scalar() == 10


def test_a_redrive_as_the_workers_role_is_refused_before_anything_is_sent(client, conn, dead_letter_url, capsys):
    keep_dead_letter(dead_letter_url, 904)
    assert main(["failures", "retry", "--all"]) == 2
    assert "may not remove job_failure rows" in capsys.readouterr().err
    assert conn.execute(text("SELECT COUNT(*) FROM job_failure")).scalar() == 1   # kept, not sent
    assert conn.execute(text("SELECT COUNT(*) FROM partner WHERE id = 904")).scalar() == 0


def test_retrying_an_unknown_failure_id_is_one_line_and_exit_code_one(capsys, dead_letter_url):
    assert main(["failures", "retry", "424242"]) == 1
    assert capsys.readouterr().err.strip() == "rewards: no job_failure row with id 424242"


def test_an_outcome_is_found_by_its_idempotency_key(client, capsys):
    first = checkin(client, 903, 0)
    for day in range(1, 7):
        checkin(client, 903, day)
    assert client.outcome(first["key"])["xp_granted"] == 10
    seventh = client.outcome(f"checkin:903:{at(6)[:10]}")
    assert seventh["status"] == "applied" and seventh["xp_granted"] == 160
    assert seventh["entries"] == ["checkin +10", "streak_bonus +150"]
    adjust(client, 903, 50, "ticket-903")
    assert main(["job", "adjustment:ticket-903"]) == 0
    assert "xp_granted   50" in capsys.readouterr().out


def test_a_key_no_job_applied_is_none_and_exit_code_one(client, capsys):
    assert client.outcome("checkin:904:2026-03-02") is None
    assert main(["job", "adjustment:never-sent"]) == 1
    assert "no applied job has the key 'adjustment:never-sent'" in capsys.readouterr().err

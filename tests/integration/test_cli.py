"""The `rewards` command against the test database and the real worker."""

import re

from sqlalchemy import text

from rewards.cli.main import main
from tests.support.database import admin_transaction
from tests.support.jobs import START, adjust, checkin, claim, refer_friends, start


def test_profile_prints_the_partners_numbers(client, capsys):
    checkin(client, 800, 0)
    assert main(["profile", "800"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "xp              10" in lines and "streak          1" in lines
    assert "time zone       UTC" in lines


def test_an_unknown_partner_is_one_line_and_exit_code_one(client, capsys):
    for command in (["profile", "809"], ["tasks", "809"], ["history", "809"]):
        assert main(command) == 1
        captured = capsys.readouterr()
        assert captured.err.strip() == "rewards: no partner 809" and captured.out == ""


def test_tasks_prints_an_aligned_table_of_every_task(client, capsys):
    start(client, 801, "invite_3_friends")
    refer_friends(client, 801, range(8011, 8013))
    assert main(["tasks", "801"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TASK", "TYPE", "STATUS", "PROGRESS", "XP", "TITLE"]
    assert len(lines) == 2 + 9  # header, rule, one row per catalogue task
    invite = next(line for line in lines if line.startswith("invite_3_friends "))
    assert invite.split()[:5] == ["invite_3_friends", "referral", "STARTED", "2/3", "500"]
    title_column = lines[0].index("TITLE")
    assert all(line[title_column - 2:title_column] == "  " for line in lines[1:])
    assert "10,000  Invite 500 friends" in lines[-2]


def test_history_and_leaderboard_print_tables(client, capsys):
    adjust(client, 802, 500, "grant-802", reason="welcome gift")
    start(client, 802, "telegram_bot")
    claim(client, 802, "telegram_bot")
    assert main(["history", "802", "--limit", "1"]) == 0
    history = capsys.readouterr().out.splitlines()
    assert len(history) == 3 and "task_reward" in history[2] and "600" in history[2]
    assert main(["leaderboard", "xp"]) == 0
    board = capsys.readouterr().out.splitlines()
    header = next(index for index, line in enumerate(board) if line.startswith("RANK"))
    assert board[header].split() == ["RANK", "PARTNER", "XP"] and board[header + 2].split() == ["1", "802", "600"]


def test_enqueue_sends_each_job_and_exits_by_its_status(client, capsys):
    at = START.isoformat()
    assert main(["enqueue", "adjust", "803", "250", "--reason", "goodwill", "--request-id", "cli-803"]) == 0
    assert "xp_after    250" in capsys.readouterr().out
    assert main(["enqueue", "start", "803", "community_chat", "--at", at]) == 0
    assert main(["enqueue", "claim", "803", "community_chat", "--at", at]) == 0
    assert main(["enqueue", "referral", "803", "804", "--at", at]) == 0
    capsys.readouterr()
    assert main(["enqueue", "adjust", "803", "-9999", "--reason", "oops", "--request-id", "cli-803b"]) == 1
    assert "insufficient_xp" in capsys.readouterr().out
    assert main(["profile", "803"]) == 0
    out = capsys.readouterr().out
    assert "xp              350" in out and "referrals       1" in out


def test_status_reads_queues_failures_and_maintenance_runs_and_names_what_needs_an_operator(client, capsys):
    checkin(client, 9701, day=0)
    with admin_transaction() as conn:
        conn.execute(text("UPDATE partner SET xp = xp + 1 WHERE id = 9701"))
    assert main(["reconcile", "--full"]) == 1  # the hand edit; a run from the terminal is recorded too
    capsys.readouterr()
    assert main(["status"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"queue checkins\s+0 waiting", out)
    assert re.search(r"failed jobs \(job_failure\)\s+0", out)
    assert re.search(r"reconcile\s+1 d\s+\d+ s ago\s+\d+ s ago\s+1\s+0\s+ok", out), out
    assert re.search(r"expire_streaks\s+1 h\s+never\s+never\s+0\s+0\s+never done", out), out
    assert "attention: the last reconcile found 1 mismatches: `rewards reconcile --full`" in out
    assert "attention: maintenance jobs without a completed run for two of their intervals: expire_streaks" in out
    with admin_transaction() as conn:
        conn.execute(text("UPDATE partner SET xp = xp - 1 WHERE id = 9701"))

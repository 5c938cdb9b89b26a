"""The read-side commands of `rewards` on the known month (tests/support/read_side_data.py)."""

from __future__ import annotations

import pytest

from rewards import db
from rewards.cli.main import main
from tests.support import read_side_data as data


@pytest.fixture(autouse=True)
def month():
    data.populate(db.get_engine())


def test_the_calendar_prints_a_month_grid_with_frozen_and_bonus_days_marked(capsys):
    assert main(["calendar", "2", "2026-03"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "March 2026 · partner 2"
    assert lines[1].split() == ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"]
    assert lines[2].split() == ["1", "·"]  # 1 March 2026 is a Sunday
    assert lines[3].split() == ["2", "✓", "3", "✓", "4", "✓", "5", "❄", "6", "✓", "7", "·", "8", "·"]
    assert lines[-1].split()[:6] == ["★", "bonus", "day", "0", "✓", "checked"]
    assert main(["calendar", "1", "2026-03"]) == 0
    assert " 8 ★" in capsys.readouterr().out


def test_a_malformed_month_is_refused_with_the_expected_shape(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["calendar", "1", "March"])
    assert exited.value.code == 2 and "a month looks like 2026-03" in capsys.readouterr().err


def test_the_preview_says_what_a_checkin_now_pays_and_why(capsys):
    assert main(["preview", "8"]) == 0  # months after the known month: partner 8's streak is gone
    assert capsys.readouterr().out.strip().endswith("would be day 1 of the streak: 50 XP = (10) × 5 PRO")


def test_the_profile_lists_the_badges(capsys):
    assert main(["profile", "1"]) == 0
    assert "badges          consistency_champion (7 days)" in capsys.readouterr().out.splitlines()


def test_the_report_prints_its_tables_and_writes_the_page_with_charts(capsys, tmp_path):
    page = tmp_path / "report.html"
    assert main(["report", "--days", "7", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    for title in ("Check-ins per day", "Current streaks (days)", "Task funnel", "XP issued per day",
                  "PRO vs regular", "Return of partners"):
        assert title in out
    assert out.strip().endswith(f"wrote {page}")
    assert page.read_text().count('<svg class="chart"') == 8
    assert main(["report", "--days", "400"]) == 2
    assert "days must be from 1 to 366" in capsys.readouterr().err

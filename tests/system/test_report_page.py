"""The analytics report page in a real headless Chromium: every chart drawn with data, nothing fetched.

The known month of tests.support.read_side_data.py goes into a fresh
SQLite file; the page is written to the test's tmp_path, opened from disk with
networking cut off (a page that needed the network would come up empty), its
DOM read after the inline script has run, and a screenshot kept next to it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from rewards import analytics, report_html
from rewards.db import make_engine
from rewards.models import metadata
from tests.support import read_side_data as data

pytestmark = pytest.mark.system

CHARTS = ("checkins", "checkin-rate", "streaks", "retention", "funnel", "popular", "xp-issued", "segments")
BROWSER_TIMEOUT_S = 90


def chromium(*arguments: str, profile: Path) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium")
    assert browser, "chromium is missing: `make test` installs it (make browser)"
    profile.mkdir()
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # Any request leaving the machine fails: the page must be self-contained.
         "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
         f"--user-data-dir={profile}", "--window-size=900,3000", "--virtual-time-budget=5000", *arguments],
        capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)


@pytest.fixture
def page(tmp_path) -> Path:
    engine = make_engine(f"sqlite:///{tmp_path / 'rewards.sqlite3'}")
    metadata.create_all(engine)
    data.populate(engine)
    with engine.connect() as conn:
        found = analytics.report(conn, date(2026, 3, 2), date(2026, 3, 10), now=data.NOW)
    engine.dispose()
    path = tmp_path / "report.html"
    path.write_text(report_html.render(found), encoding="utf-8")
    return path


def test_the_report_page_needs_no_network_and_references_nothing_outside_itself(page):
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html


def test_every_chart_of_the_report_renders_with_data_in_chromium_and_a_screenshot_is_kept(page, tmp_path):
    dumped = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    charts = {match.group(1): match.group(0)
              for match in re.finditer(r'<svg class="chart" id="([a-z-]+)"[^>]*>', dumped.stdout)}
    assert set(charts) == set(CHARTS)
    for chart_id, tag in charts.items():
        assert 'data-rendered="yes"' in tag, f"chart {chart_id} drew nothing: {tag}"
        assert int(re.search(r'data-marks="(\d+)"', tag).group(1)) > 0, chart_id

    screenshot = tmp_path / "report.png"
    shot = chromium(f"--screenshot={screenshot}", page.as_uri(), profile=tmp_path / "profile-shot")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000, "a blank page compresses to far less than eight charts"
    print(f"report screenshot: {screenshot}")

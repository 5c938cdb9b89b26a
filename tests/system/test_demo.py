"""`rewards demo` on the embedded defaults: a real worker, no servers, every figure checked."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.system


def test_the_demo_runs_a_short_month_without_servers_and_agrees_with_the_reference_model(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # none of the test servers' variables
    finished = subprocess.run(
        [sys.executable, "-m", "rewards.cli", "demo", "--partners", "24", "--days", "10",
         "--report", str(tmp_path / "month.html")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "broker   filesystem://" in finished.stdout
    for table in ("Against the reference model (chaos/model.py",
                  "Cumulative check-in XP of a daily partner vs the reference document", "XP by entry type",
                  "Top 10 by XP", "Top 10 by current streak", "Task funnel", "Job results",
                  "Reconciliation (full), run by the worker"):
        assert table in finished.stdout
    assert "Every figure agrees with the reference model (chaos/model.py)." in finished.stdout
    assert "duplicate" in finished.stdout
    assert f"analytics report (charts, open it in a browser): {tmp_path / 'month.html'}" in finished.stdout
    page = (tmp_path / "month.html").read_text()
    assert page.count('<svg class="chart"') == 8 and 'data-marks="0"' not in page


def test_the_demo_with_a_broken_catalogue_fails_promptly_saying_why_and_keeps_its_folder(tmp_path):
    catalogue = tmp_path / "catalog.toml"
    catalogue.write_text('[tasks.telegram_bot]\ntype = "social"\nreward_xp = -5\n')
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
           "REWARDS_CATALOG_PATH": str(catalogue)}
    finished = subprocess.run(
        [sys.executable, "-m", "rewards.cli", "demo", "--partners", "4", "--days", "1"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )

    assert finished.returncode == 2, finished.stdout + finished.stderr
    assert "the demo cannot finish: the worker exited with code" in finished.stderr
    assert "the oldest rewards.partner.update" in finished.stderr
    # The worker's own words, from the tail of its output.
    assert "CatalogError" in finished.stderr and "telegram_bot" in finished.stderr
    kept = re.search(r"kept (\S+) \(worker.log", finished.stderr)
    assert kept is not None, finished.stderr
    assert (Path(kept.group(1)) / "worker.log").exists()

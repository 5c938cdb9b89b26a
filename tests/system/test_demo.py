"""`rewards demo` on the embedded defaults: a real worker, no servers, every figure checked."""

import subprocess
import sys

import pytest

from tests.system.conftest import REPO_ROOT

pytestmark = pytest.mark.system


def test_the_demo_runs_a_short_month_without_servers_and_agrees_with_the_rules(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # none of the test servers' variables
    finished = subprocess.run(
        [sys.executable, "-m", "rewards.cli", "demo", "--partners", "24", "--days", "10"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "broker   filesystem://" in finished.stdout
    for table in ("Cumulative check-in XP of a daily partner vs the reference document", "XP by entry type",
                  "Top 10 by XP", "Top 10 by current streak", "Task funnel", "Job results",
                  "Reconciliation (full), run by the worker"):
        assert table in finished.stdout
    assert "Every figure agrees with the rules." in finished.stdout
    assert "duplicate" in finished.stdout

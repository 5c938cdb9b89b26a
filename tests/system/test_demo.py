"""`rewards demo` on the embedded defaults: a real worker, no servers, every figure checked."""

import subprocess
import sys

import pytest

from tests.system.conftest import REPO_ROOT

pytestmark = pytest.mark.system


def test_the_demo_runs_a_short_month_without_servers_and_agrees_with_the_rules(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # none of the test servers' variables
    finished = subprocess.run(
        [sys.executable, "-m", "rewards.cli", "demo", "--partners", "20", "--days", "8"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "broker   filesystem://" in finished.stdout
    assert "Cumulative XP of a daily partner vs the reference document" in finished.stdout
    assert "Every figure agrees with the rules." in finished.stdout
    assert "duplicate" in finished.stdout

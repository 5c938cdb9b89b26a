"""The alert rules (rewards/metrics/alerts.yml): valid for Prometheus, unit-tested, and each with its runbook.

`promtool` comes with Debian's prometheus package (`make services` installs
it). Its rule tests feed each paging alert the series that should, and
should not, fire it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
METRICS = ROOT / "rewards" / "metrics"
RULES = yaml.safe_load((METRICS / "alerts.yml").read_text())["groups"]
ALERTS = [rule for group in RULES for rule in group["rules"] if "alert" in rule]
RULE_TESTS = yaml.safe_load((METRICS / "alerts_test.yml").read_text())["tests"]


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: `make services` installs Debian's prometheus package"
    return subprocess.run([binary, *args], cwd=METRICS, capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_rules():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_unit_tests_pass():
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_paging_alert_has_a_rule_test_that_expects_it_to_fire():
    fired = {case["alertname"] for test in RULE_TESTS for case in test["alert_rule_test"] if case.get("exp_alerts")}
    paging = {alert["alert"] for alert in ALERTS if alert["labels"]["severity"] == "page"}
    assert paging and paging <= fired, f"no rule test fires {sorted(paging - fired)}"


def slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("alert", ALERTS, ids=lambda alert: alert["alert"])
def test_every_alert_links_its_runbook_and_the_runbook_names_a_command(alert):
    page, _, anchor = alert["annotations"]["runbook"].partition("#")
    text = (ROOT / page).read_text()
    sections = re.split(r"^### ", text, flags=re.MULTILINE)
    runbook = next((section for section in sections if slug(section.splitlines()[0]) == anchor), None)
    assert anchor == alert["alert"].lower() and runbook is not None, f"{page} has no heading for #{anchor}"
    assert re.search(r"`(rewards|celery|docker compose) [^`]+`", runbook), \
        f"the runbook of {alert['alert']} names no command to run"
    assert alert["labels"]["severity"] in ("page", "ticket")

"""A worker refuses to start on a bad task catalogue, naming the entry and the field."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

CELERY = Path(sys.executable).with_name("celery")


@pytest.mark.system
def test_a_worker_with_a_referral_task_lacking_its_requirement_stops_at_start_up(tmp_path):
    catalogue = tmp_path / "catalog.toml"
    catalogue.write_text('[tasks.invite_3_friends]\ntype = "referral"\nreward_xp = 500\n')
    finished = subprocess.run(
        [str(CELERY), "-A", "workers", "worker", "--pool=solo", "-Q", "claims", "--loglevel=WARNING"],
        env={**os.environ, "REWARDS_CATALOG_PATH": str(catalogue)},
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
    )
    assert finished.returncode != 0
    last_line = finished.stderr.strip().splitlines()[-1]
    assert last_line == (f"rewards.catalog.CatalogError: {catalogue}: task 'invite_3_friends': "
                         "field 'requirement' is required for referral tasks")

"""The demo's progress bar: the rate is recent, and a stall is an error naming the oldest pending job."""

import io

import pytest

from rewards.cli.progress import DemoStalled, Progress


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_no_job_finishing_for_longer_than_the_limit_stops_the_wait_naming_the_oldest_pending_job():
    clock = Clock()
    progress = Progress(io.StringIO(), stall_s=60, clock=clock)
    progress.enqueued = 3
    clock.now_s += 59
    progress.check("rewards.checkin {'partner_id': 7}", "job-1")  # within the limit: no error
    clock.now_s += 2
    with pytest.raises(DemoStalled, match=r"no job finished for 61 s .*3 pending, the oldest "
                                          r"rewards.checkin \{'partner_id': 7\} \(job job-1\)"):
        progress.check("rewards.checkin {'partner_id': 7}", "job-1")


def test_a_finished_job_restarts_the_stall_clock():
    clock = Clock()
    progress = Progress(io.StringIO(), stall_s=60, clock=clock)
    clock.now_s += 50
    progress.completed()
    clock.now_s += 50
    progress.check("rewards.checkin {}", "job-2")


def test_the_rate_shown_is_recent_progress_and_falls_to_zero_when_nothing_finishes():
    clock = Clock()
    progress = Progress(io.StringIO(), clock=clock)
    for _ in range(100):
        clock.now_s += 0.05
        progress.completed()
        progress.rate_per_s()
    assert progress.rate_per_s() == pytest.approx(20, rel=0.05)
    for _ in range(20):
        clock.now_s += 0.5
        progress.rate_per_s()
    assert progress.rate_per_s() == 0

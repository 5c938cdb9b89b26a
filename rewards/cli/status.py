"""`rewards status`: the engine's health at a glance, read as beat's metrics read it (rewards.metrics.state).

    rewards status                           queues, failed jobs, outbox, leaderboards, each maintenance job's last run

Each line that needs an operator names what to run next; the exit code is 1
when one does, 2 when a server could not be read.
"""

from __future__ import annotations

import argparse
from datetime import datetime

from rewards import contract
from rewards.cli.common import print_table
from rewards.metrics.state import MaintenanceRun, State, read_state


def _age(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "never"
    seconds = max(0, int((now - then).total_seconds()))
    for unit_s, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if seconds >= unit_s:
            return f"{seconds / unit_s:.1f} {unit} ago"
    return f"{seconds} s ago"


def _every(interval_s: int) -> str:
    for unit_s, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if interval_s >= unit_s and interval_s % unit_s == 0:
            return f"{interval_s // unit_s} {unit}"
    return f"{interval_s} s"


def is_late(run: MaintenanceRun, now: datetime) -> bool:
    return run.done_at is None or (now - run.done_at).total_seconds() > 2 * run.interval_s


def attention(state: State) -> list[str]:
    """What an operator should look at, each with the command that helps."""
    notes = []
    if state.dead_letters:
        notes.append(f"{state.dead_letters} failure records wait in Redis for PostgreSQL: "
                     "see `rewards failures list` (it moves them in)")
    if state.failures_by_reason:
        notes.append(f"{sum(state.failures_by_reason.values())} failed jobs are recorded: "
                     "`rewards failures list`, then `rewards failures retry`")
    runs = state.maintenance or []
    for run in runs:
        if run.job == contract.MAINTENANCE_RECONCILE and run.details.get("mismatches"):
            notes.append(f"the last reconcile found {run.details['mismatches']} mismatches: `rewards reconcile --full`")
    late = [_short(run.job) for run in runs if is_late(run, state.read_at)]
    if late:
        notes.append(f"maintenance jobs without a completed run for two of their intervals: {', '.join(late)}; "
                     "are beat and the maintenance worker up?")
    return notes


def _short(job: str) -> str:
    return job.removeprefix(contract.MAINTENANCE_PREFIX)


def _run_state(run: MaintenanceRun, now: datetime) -> str:
    if run.done_at is None:
        return "never done"
    if is_late(run, now):
        return "late"
    return f"skipped: {run.skipped}" if run.skipped else "ok"


def _print_overview(state: State) -> None:
    rows = [[f"queue {queue}", f"{count} waiting"] for queue, count in (state.queue_messages or {}).items()]
    if state.dead_letters is not None:
        rows.append(["dead letters (Redis)", state.dead_letters])
    if state.failures_by_reason is not None:
        by_reason = ", ".join(f"{reason} {count}" for reason, count in sorted(state.failures_by_reason.items()))
        rows.append(["failed jobs (job_failure)", by_reason or 0])
    if state.outbox_pending is not None:
        rows.append(["outbox pending", f"{state.outbox_pending}, oldest created "
                     f"{_age(state.read_at, state.outbox_oldest_pending_at)}" if state.outbox_pending else 0])
    if state.leaderboard_lag_s is not None:
        rows.append(["leaderboards behind the ledger", f"{state.leaderboard_lag_s:.1f} s"])
    print_table(["WHAT", "NOW"], rows)


def _print_maintenance(state: State) -> None:
    now = state.read_at
    print_table(["MAINTENANCE JOB", "EVERY", "LAST RUN", "LAST DONE", "EXAMINED", "CHANGED", "MORE", "STATE"], [
        [_short(run.job), _every(run.interval_s), _age(now, run.last_run_at), _age(now, run.done_at),
         run.examined, run.changed, "yes" if run.more else "", _run_state(run, now)]
        for run in state.maintenance or []])


def cmd_status(args: argparse.Namespace) -> int:
    state = read_state()
    _print_overview(state)
    if state.maintenance is not None:
        print()
        _print_maintenance(state)
    notes = attention(state)
    for note in notes:
        print(f"attention: {note}")
    for source, error in state.errors.items():
        print(f"rewards: cannot read the {source} ({error}): check its URL and that it is up")
    return 2 if state.errors else 1 if notes else 0


def add_commands(commands) -> None:
    status = commands.add_parser("status", help="the engine's health: queues, failed jobs, outbox, maintenance runs")
    status.set_defaults(handler=cmd_status)


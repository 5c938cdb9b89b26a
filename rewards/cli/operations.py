"""The operator's checks and repairs: `rewards reconcile`, `rewards failures list|retry`, `rewards job KEY`.

    rewards reconcile [--full]               check the ledger invariants, print the mismatches (exit 1)
    rewards failures list                    jobs that failed (job_failure, and dead letters still in Redis)
    rewards failures retry 7 | --all         send failed jobs again; an applied one comes back `duplicate`
    rewards job checkin:42:2026-03-02        the outcome PostgreSQL holds for an idempotency key
"""

from __future__ import annotations

import argparse

from rewards import db, deadletters
from rewards import settings as settings_module
from rewards.cli.common import CliError, NotFound, print_result, print_table, reading, row_limit
from rewards.cli.tables import render
from rewards.client import RewardsClient
from rewards.ledger import redrive
from rewards.models import utcnow
from schedules import reconcile


def cmd_reconcile(args: argparse.Namespace) -> int:
    limits = settings_module.get().maintenance
    summary = reconcile.run(db.get_engine(), utcnow(), limits.batch_size, full=args.full,
                            lag_s=limits.reconcile_lag_s)
    if summary.skipped:
        raise CliError(f"another reconcile run holds the lock ({summary.skipped}); try again when it ends")
    found, total = summary.details["found"], summary.details["mismatches"]
    print(f"checked {summary.examined} partners ({summary.details['mode']}) in {summary.took_ms:g} ms: "
          f"{total} mismatch{'es' if total != 1 else ''}")
    if found:
        print()
        print(render(("partner_id", "check", "details"), [
            (m["partner_id"], m["check"], " ".join(f"{k}={v}" for k, v in m["details"].items()))
            for m in found
        ]))
    if total > len(found):
        print(f"… and {total - len(found)} more: every one is an audit_event of type reconciliation.mismatch")
    return 1 if total else 0


def _move_dead_letters() -> int:
    """Move failure records kept in Redis while PostgreSQL was away into job_failure first."""
    url = settings_module.get().dead_letter_url
    return deadletters.move_to_database(url, db.get_engine()) if url else 0


def cmd_failures_list(args: argparse.Namespace) -> int:
    moved = _move_dead_letters()
    if moved:
        print(f"moved {moved} dead letter{'s' if moved != 1 else ''} from Redis into job_failure")
    with reading() as conn:
        rows = redrive.newest(conn, args.limit)
    if not rows:
        print("no failed jobs")
        return 0
    print_table(["ID", "LAST SEEN (UTC)", "TASK", "REASON", "TRIES", "ERROR"], [
        [row.id, row.last_seen_at, row.task_name, row.reason, row.attempts, row.error[:60]] for row in rows
    ])
    return 0


def cmd_failures_retry(args: argparse.Namespace) -> int:
    if not args.all and not args.ids:
        raise CliError("give the ids to retry (see `rewards failures list`) or --all")
    _move_dead_letters()
    with reading() as conn:
        rows = redrive.select_failures(conn, None if args.all else args.ids)
    missing = set(args.ids) - {row.id for row in rows}
    if missing:
        raise NotFound(f"no job_failure row with id {', '.join(map(str, sorted(missing)))}")
    with db.transaction() as conn:
        # Checked before anything is sent: a job sent again whose row then stays would be sent twice.
        if not redrive.may_redrive(conn):
            raise CliError("this database role may not remove job_failure rows; run `rewards failures retry` "
                           "with REWARDS_DATABASE_URL naming the database owner (docs/security.md, 'PostgreSQL roles')")
    client = RewardsClient()
    try:
        for row in rows:
            if not isinstance(row.payload, dict) or "args" in row.payload:
                print(f"{row.id}: not re-sent: its payload is not keyword arguments ({row.reason})")
                continue
            sent = client.send(row.task_name, **row.payload)
            with db.transaction() as conn:
                redrive.redriven(conn, row, sent.id, utcnow())
            print(f"{row.id}: {row.task_name} sent again as job {sent.id}")
    finally:
        client.close()
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    client = RewardsClient()
    try:
        found = client.outcome(args.key)
    finally:
        client.close()
    if found is None:
        raise NotFound(f"no applied job has the key {args.key!r}: it is queued, retrying, rejected or "
                       "was never sent (see `rewards failures list`)")
    print_result(found)
    return 0


def add_commands(commands) -> None:
    """`rewards reconcile`, `rewards failures list|retry` and `rewards job`."""
    check = commands.add_parser("reconcile", help="check balances against the ledger; exit 1 on mismatches")
    check.add_argument("--full", action="store_true",
                       help="check every partner, not only those with ledger rows since the last run")
    check.set_defaults(handler=cmd_reconcile)
    _add_failures(commands)
    job = commands.add_parser("job", help="the outcome PostgreSQL holds for an idempotency key")
    job.add_argument("key", help="a job's key, e.g. checkin:42:2026-03-02 or adjustment:ticket-981")
    job.set_defaults(handler=cmd_job)


def _add_failures(commands) -> None:
    failures = commands.add_parser("failures", help="jobs that failed: list them, send them again")
    actions = failures.add_subparsers(dest="failures_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="newest first; dead letters kept in Redis are moved in first")
    listing.add_argument("--limit", type=row_limit, default=50, help="rows to show (default 50)")
    listing.set_defaults(handler=cmd_failures_list)
    retry = actions.add_parser("retry", help="send failed jobs again and remove their rows")
    retry.add_argument("ids", nargs="*", type=int, help="job_failure ids")
    retry.add_argument("--all", action="store_true", help="every failed job")
    retry.set_defaults(handler=cmd_failures_retry)

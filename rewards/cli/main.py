"""The `rewards` command: operate the engine from a terminal.

    rewards db upgrade                       migrate the database to the latest schema
    rewards demo --partners 50               a simulated month through a real worker
    rewards profile 42                       balance, streaks, referrals, plan
    rewards tasks 42                         every task: status, progress, XP a claim pays now
    rewards history 42 --limit 20            ledger rows, newest first
    rewards leaderboard weekly --around 42   a leaderboard (xp, weekly, streak): top N or around a partner
    rewards leaderboard rebuild|reconcile    rebuild the Redis boards, or report their drift
    rewards calendar 42 2026-03              a month of check-ins: bonus, checked-in, frozen, missed days
    rewards preview 42                       what a check-in now would pay
    rewards report --days 30 --html r.html   analytics tables, and a page with charts
    rewards enqueue checkin 42               send a job through the client, print its result
    rewards enqueue checkin-batch 42 43@2026-11-24T09:30:00+00:00
    rewards enqueue partner 42 --timezone Asia/Tokyo --pro-until 2027-01-01T00:00:00+00:00
    rewards enqueue start 42 invite_3_friends
    rewards enqueue claim 42 invite_3_friends
    rewards enqueue referral 42 43           partner 42 referred partner 43
    rewards enqueue adjust 42 -100 --reason "chargeback" --request-id ticket-981
    rewards reconcile [--full]               check the ledger invariants, print the mismatches
    rewards failures list                    jobs that failed (job_failure, and dead letters still in Redis)
    rewards failures retry 7 | --all         send failed jobs again; an applied one comes back `duplicate`
    rewards job checkin:42:2026-03-02        the outcome PostgreSQL holds for an idempotency key
    rewards access redis-acl [--apply URL]   the Redis users of each role: an ACL file, or set them

Errors are one line naming the problem and what to do; exit codes: 0 done,
1 the job was rejected or failed, the partner is unknown, or reconcile found
mismatches, 2 bad usage or configuration (or another reconcile run holds the lock).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from rewards import queries
from rewards import settings as settings_module
from rewards.catalog import CatalogError
from rewards.cli.tables import render


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class NotFound(Exception):
    """What was asked about does not exist; printed as one line, exit code 1."""


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from rewards import db

    db.upgrade(args.revision)
    print(f"database at {args.revision}")
    return 0


def _print_result(result: dict[str, Any]) -> None:
    width = max(len(name) for name in result)
    for name, value in result.items():
        print(f"{name:<{width}}  {value}")


def _print_batch_result(result: dict[str, Any]) -> None:
    _print_result({name: value for name, value in result.items() if name != "items"})
    rows = [[index, item.get("partner_id", "-"), item.get("day", "-"), item["status"],
             item.get("reason") or "", item.get("xp_granted", "")]
            for index, item in enumerate(result.get("items", []))]
    print(render(["#", "partner", "day", "status", "reason", "xp granted"], rows))


def _wait(async_result, timeout_s: float) -> int:
    from celery.exceptions import TimeoutError as CeleryTimeout

    try:
        result = async_result.get(timeout=timeout_s)
    except CeleryTimeout:
        raise CliError(f"no result within {timeout_s:g} s (job id {async_result.id}); "
                       "is a worker consuming the queue? Start one with: "
                       "celery -A workers worker -Q checkins,claims,operator,maintenance") from None
    if "items" in result:
        _print_batch_result(result)
    else:
        _print_result(result)
    return 1 if result.get("status") == "rejected" else 0


def _send_partner_update(client, args: argparse.Namespace):
    options: dict[str, Any] = {}
    if args.pro_until is not None:
        options["pro_until"] = None if args.pro_until == "none" else args.pro_until
    if args.timezone is not None:
        options["timezone"] = args.timezone
    if not options:
        raise CliError("give --pro-until and/or --timezone: there is nothing to update")
    return client.update_partner(args.partner_id, occurred_at=args.at, **options)


def checkin_batch_item(text: str) -> tuple[int, str | None]:
    """`PARTNER_ID` or `PARTNER_ID@OCCURRED_AT`, as `rewards enqueue checkin-batch` takes them."""
    partner, _, occurred_at = text.partition("@")
    try:
        return int(partner), occurred_at or None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not PARTNER_ID or PARTNER_ID@OCCURRED_AT (e.g. 42@2026-11-24T09:30:00+00:00)"
        ) from None


def _send_checkin_batch(client, args: argparse.Namespace):
    if len(args.checkins) > client.batch_max:
        raise CliError(f"{len(args.checkins)} check-ins is more than one batch carries "
                       f"({client.batch_max}, REWARDS_BATCH_MAX)")
    return client.checkin_many(args.checkins)[0]


_SENDERS = {
    "checkin": lambda client, args: client.checkin(args.partner_id, occurred_at=args.at),
    "checkin-batch": _send_checkin_batch,
    "partner": _send_partner_update,
    "start": lambda client, args: client.start_task(args.partner_id, args.task_id, occurred_at=args.at),
    "claim": lambda client, args: client.claim_task(args.partner_id, args.task_id, occurred_at=args.at),
    "referral": lambda client, args: client.record_referral(args.referrer_id, args.referee_id,
                                                            occurred_at=args.at),
    "adjust": lambda client, args: client.adjust(args.partner_id, args.amount, args.reason,
                                                 args.request_id),
}


def cmd_enqueue(args: argparse.Namespace) -> int:
    from rewards.client import RewardsClient

    client = RewardsClient()
    try:
        sent = _SENDERS[args.job](client, args)
        print(f"sent {sent.id}")
        return _wait(sent, args.timeout)
    finally:
        client.close()


def cmd_demo(args: argparse.Namespace) -> int:
    from rewards.cli.demo import run_demo

    if args.partners < 2 or args.days < 1:
        raise CliError("the demo needs --partners of at least 2 and --days of at least 1")
    if args.stall_s <= 0:
        raise CliError("--stall-s must be a positive number of seconds")
    return run_demo(args.partners, args.days, args.seed, args.database_url, args.broker_url, Path(args.report),
                    args.stall_s)


def _print_table(headers: list[str], rows: list[list[Any]]) -> None:
    print(render(headers, [[_cell(value) for value in row] for row in rows]))


def _cell(value: Any) -> Any:
    """Instants and days as short text; numbers and None are left to the table renderer."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return value


@contextmanager
def _reading() -> Iterator[Connection]:
    """A connection for read-side queries (the read engine); an unknown partner becomes NotFound (exit 1).

    Read from a standby, the output is followed (on stderr) by how current it is.
    """
    from rewards import db

    with db.get_read_engine().connect() as conn:
        fresh = queries.freshness(conn)
        try:
            yield conn
        except queries.UnknownPartner as error:
            raise NotFound(str(error)) from None
    if fresh.from_standby:
        print(f"(read from a standby: {_as_of(fresh.as_of)})", file=sys.stderr)


def _as_of(replayed_at: datetime | None) -> str:
    if replayed_at is None:
        return "it has replayed no commit since it started"
    behind_s = (datetime.now(timezone.utc) - replayed_at).total_seconds()
    return f"every commit up to {replayed_at:%Y-%m-%d %H:%M:%S} UTC, {behind_s:.1f} s before this read, is in it"


def cmd_profile(args: argparse.Namespace) -> int:
    with _reading() as conn:
        found = queries.profile(conn, args.partner_id)
    _print_result({
        "partner": found.partner_id, "xp": found.xp, "streak": found.checkin_streak,
        "longest streak": found.longest_streak, "check-ins": found.total_checkins,
        "referrals": found.referral_count, "last check-in": _cell(found.last_checkin_day) or "-",
        "pro": "yes" if found.pro else "no", "pro until": _cell(found.pro_until) or "-",
        "time zone": found.timezone,
        "badges": ", ".join(f"{badge.badge} ({badge.streak_days} days)" for badge in found.badges) or "-",
    })
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    with _reading() as conn:
        views = queries.tasks(conn, args.partner_id)
    _print_table(["TASK", "TYPE", "STATUS", "PROGRESS", "XP", "TITLE"], [
        [view.task_id, view.type, view.status + (" (claimable)" if view.claimable else ""),
         str(view.progress) if view.progress.required else None,
         None if view.status == "COMPLETED" else view.xp_on_claim, view.title]
        for view in views
    ])
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with _reading() as conn:
        entries = queries.history(conn, args.partner_id, args.limit)
    if not entries:
        print(f"partner {args.partner_id} has no ledger entries yet")
        return 0
    _print_table(["ID", "WHEN (UTC)", "TYPE", "XP", "BALANCE", "DESCRIPTION"], [
        [entry.entry_id, entry.occurred_at, entry.entry_type, entry.amount, entry.balance_after,
         entry.description]
        for entry in entries
    ])
    return 0


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= value <= queries.MAX_ROWS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {queries.MAX_ROWS}, got {value}")
    return value


def cmd_reconcile(args: argparse.Namespace) -> int:
    from rewards import db
    from rewards.cli import tables
    from rewards.models import utcnow
    from schedules import reconcile

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
        print(tables.render(("partner_id", "check", "details"), [
            (m["partner_id"], m["check"], " ".join(f"{k}={v}" for k, v in m["details"].items()))
            for m in found
        ]))
    if total > len(found):
        print(f"… and {total - len(found)} more: every one is an audit_event of type reconciliation.mismatch")
    return 1 if total else 0


def _move_dead_letters() -> int:
    """Move failure records kept in Redis while PostgreSQL was away into job_failure first."""
    from rewards import db, deadletters

    url = settings_module.get().dead_letter_url
    return deadletters.move_to_database(url, db.get_engine()) if url else 0


def cmd_failures_list(args: argparse.Namespace) -> int:
    from rewards.ledger import redrive

    moved = _move_dead_letters()
    if moved:
        print(f"moved {moved} dead letter{'s' if moved != 1 else ''} from Redis into job_failure")
    with _reading() as conn:
        rows = redrive.newest(conn, args.limit)
    if not rows:
        print("no failed jobs")
        return 0
    _print_table(["ID", "LAST SEEN (UTC)", "TASK", "REASON", "TRIES", "ERROR"], [
        [row.id, row.last_seen_at, row.task_name, row.reason, row.attempts, row.error[:60]] for row in rows
    ])
    return 0


def cmd_failures_retry(args: argparse.Namespace) -> int:
    from rewards import db
    from rewards.client import RewardsClient
    from rewards.ledger import redrive
    from rewards.models import utcnow

    if not args.all and not args.ids:
        raise CliError("give the ids to retry (see `rewards failures list`) or --all")
    _move_dead_letters()
    with _reading() as conn:
        rows = redrive.select_failures(conn, None if args.all else args.ids)
    missing = set(args.ids) - {row.id for row in rows}
    if missing:
        raise NotFound(f"no job_failure row with id {', '.join(map(str, sorted(missing)))}")
    with db.transaction() as conn:
        # Checked before anything is sent: a job sent again whose row then stays would be sent twice.
        if not redrive.may_redrive(conn):
            raise CliError("this database role may not remove job_failure rows; run `rewards failures retry` "
                           "with REWARDS_DATABASE_URL naming the database owner (README, PostgreSQL roles)")
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
    from rewards.client import RewardsClient

    client = RewardsClient()
    try:
        found = client.outcome(args.key)
    finally:
        client.close()
    if found is None:
        raise NotFound(f"no applied job has the key {args.key!r}: it is queued, retrying, rejected or "
                       "was never sent (see `rewards failures list`)")
    _print_result(found)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rewards", description="Operate the rewards engine.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser("upgrade", help="migrate to the latest schema (alembic upgrade)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=cmd_db_upgrade)

    demo = commands.add_parser("demo", help="simulate a month through a real worker and check every figure")
    demo.add_argument("--partners", type=int, default=200, help="how many partners (default 200)")
    demo.add_argument("--days", type=int, default=30, help="how many days (default 30)")
    demo.add_argument("--seed", type=int, default=7, help="random seed; the same seed replays the same month")
    demo.add_argument("--database-url", help="use this database instead of a temporary SQLite file")
    demo.add_argument("--broker-url", help="use this broker instead of a temporary filesystem:// one")
    demo.add_argument("--report", default="rewards-demo-report.html",
                      help="where to write the month's HTML analytics report (default rewards-demo-report.html)")
    demo.add_argument("--stall-s", type=float, default=60.0,
                      help="give up when no job finishes for this long (default 60)")
    demo.set_defaults(handler=cmd_demo)

    for name, handler, text in (("profile", cmd_profile, "a partner's balance, streaks and plan"),
                                ("tasks", cmd_tasks, "every task with status, progress and XP a claim pays now"),
                                ("history", cmd_history, "a partner's ledger rows, newest first")):
        reader = commands.add_parser(name, help=text)
        reader.add_argument("partner_id", type=int)
        if name == "history":
            reader.add_argument("--limit", type=_limit, default=20, help="rows to show (default 20)")
        reader.set_defaults(handler=handler)
    from rewards.cli import views

    views.add_commands(commands, _limit)

    _add_enqueue(commands)

    reconcile = commands.add_parser("reconcile", help="check balances against the ledger; exit 1 on mismatches")
    reconcile.add_argument("--full", action="store_true",
                           help="check every partner, not only those with ledger rows since the last run")
    reconcile.set_defaults(handler=cmd_reconcile)
    _add_failures(commands)
    job = commands.add_parser("job", help="the outcome PostgreSQL holds for an idempotency key")
    job.add_argument("key", help="a job's key, e.g. checkin:42:2026-03-02 or adjustment:ticket-981")
    job.set_defaults(handler=cmd_job)
    from rewards.cli import access

    access.add_parser(commands)
    return parser


def _add_failures(commands) -> None:
    failures = commands.add_parser("failures", help="jobs that failed: list them, send them again")
    actions = failures.add_subparsers(dest="failures_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="newest first; dead letters kept in Redis are moved in first")
    listing.add_argument("--limit", type=_limit, default=50, help="rows to show (default 50)")
    listing.set_defaults(handler=cmd_failures_list)
    retry = actions.add_parser("retry", help="send failed jobs again and remove their rows")
    retry.add_argument("ids", nargs="*", type=int, help="job_failure ids")
    retry.add_argument("--all", action="store_true", help="every failed job")
    retry.set_defaults(handler=cmd_failures_retry)


def _add_enqueue(commands) -> None:
    enqueue = commands.add_parser("enqueue", help="send a job and print its result")
    jobs = enqueue.add_subparsers(dest="job", required=True, metavar="JOB")
    checkin = jobs.add_parser("checkin", help="rewards.checkin")
    checkin.add_argument("partner_id", type=int)
    batch = jobs.add_parser("checkin-batch", help="rewards.checkin.batch: many check-ins in one message")
    batch.add_argument("checkins", nargs="+", type=checkin_batch_item, metavar="PARTNER_ID[@OCCURRED_AT]",
                       help="a check-in; occurred_at (ISO-8601 with offset) defaults to now")
    batch.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the result")
    batch.set_defaults(handler=cmd_enqueue)
    partner = jobs.add_parser("partner", help="rewards.partner.update")
    partner.add_argument("partner_id", type=int)
    partner.add_argument("--pro-until", help="ISO-8601 instant with offset, or 'none' to end PRO")
    partner.add_argument("--timezone", help="IANA time zone name, e.g. Europe/Berlin")
    start = jobs.add_parser("start", help="rewards.task.start")
    claim = jobs.add_parser("claim", help="rewards.task.claim")
    for task_parser in (start, claim):
        task_parser.add_argument("partner_id", type=int)
        task_parser.add_argument("task_id", help="a catalogue task, e.g. invite_3_friends")
    referral = jobs.add_parser("referral", help="rewards.referral.record")
    referral.add_argument("referrer_id", type=int)
    referral.add_argument("referee_id", type=int)
    adjust = jobs.add_parser("adjust", help="rewards.adjust: an operator's grant (+) or deduction (-)")
    adjust.add_argument("partner_id", type=int)
    adjust.add_argument("amount", type=int, help="XP to grant, or a negative number to deduct")
    adjust.add_argument("--reason", required=True, help="why, 1 to 200 characters")
    adjust.add_argument("--request-id", required=True, help="idempotency key: a replay applies once")
    for job_parser in (checkin, partner, start, claim, referral, adjust):
        if job_parser is not adjust:
            job_parser.add_argument("--at", help="occurred_at, ISO-8601 with offset (default: now)")
        job_parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the result")
        job_parser.set_defaults(handler=cmd_enqueue)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except NotFound as error:
        print(f"rewards: {error}", file=sys.stderr)
        return 1
    except (CliError, settings_module.ConfigError, CatalogError, PermissionError) as error:
        print(f"rewards: {error}", file=sys.stderr)
        return 2
    except OperationalError as error:
        print(f"rewards: cannot reach the database: {error.orig}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

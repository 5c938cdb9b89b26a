"""The `rewards` command: operate the engine from a terminal.

    rewards db upgrade                       migrate the database to the latest schema
    rewards demo --partners 50               a simulated month through a real worker
    rewards profile 42                       balance, streaks, referrals, plan
    rewards tasks 42                         every task: status, progress, XP a claim pays now
    rewards history 42 --limit 20            ledger rows, newest first
    rewards leaderboard xp --limit 10        all-time XP (or: streak)
    rewards enqueue checkin 42               send a job through the client, print its result
    rewards enqueue partner 42 --timezone Asia/Tokyo --pro-until 2027-01-01T00:00:00+00:00
    rewards enqueue start 42 invite_3_friends
    rewards enqueue claim 42 invite_3_friends
    rewards enqueue referral 42 43           partner 42 referred partner 43
    rewards enqueue adjust 42 -100 --reason "chargeback" --request-id ticket-981
    rewards reconcile [--full]               check the ledger invariants, print the mismatches

Errors are one line naming the problem and what to do; exit codes: 0 done,
1 the job was rejected or failed, the partner is unknown, or reconcile found
mismatches, 2 bad usage or configuration (or another reconcile run holds the lock).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from importlib import resources
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from rewards import queries
from rewards import settings as settings_module
from rewards.catalog import CatalogError
from rewards.tables import render


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class NotFound(Exception):
    """What was asked about does not exist; printed as one line, exit code 1."""


def alembic_config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    config.set_main_option("sqlalchemy.url", settings_module.get().database_url)
    return config


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from alembic import command

    command.upgrade(alembic_config(), args.revision)
    print(f"database at {args.revision}")
    return 0


def _print_result(result: dict[str, Any]) -> None:
    width = max(len(name) for name in result)
    for name, value in result.items():
        print(f"{name:<{width}}  {value}")


def _wait(async_result, timeout_s: float) -> int:
    from celery.exceptions import TimeoutError as CeleryTimeout

    try:
        result = async_result.get(timeout=timeout_s)
    except CeleryTimeout:
        raise CliError(f"no result within {timeout_s:g} s (job id {async_result.id}); "
                       "is a worker consuming the queue? Start one with: "
                       "celery -A workers worker -Q checkins,claims,maintenance") from None
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


_SENDERS = {
    "checkin": lambda client, args: client.checkin(args.partner_id, occurred_at=args.at),
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
    from rewards.demo import run_demo

    if args.partners < 2 or args.days < 1:
        raise CliError("the demo needs --partners of at least 2 and --days of at least 1")
    return run_demo(args.partners, args.days, args.seed, args.database_url, args.broker_url)


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
    """A connection for read-side queries; an unknown partner becomes NotFound (exit 1)."""
    from rewards import db

    with db.get_engine().connect() as conn:
        try:
            yield conn
        except queries.UnknownPartner as error:
            raise NotFound(str(error)) from None


def cmd_profile(args: argparse.Namespace) -> int:
    with _reading() as conn:
        found = queries.profile(conn, args.partner_id)
    _print_result({
        "partner": found.partner_id, "xp": found.xp, "streak": found.checkin_streak,
        "longest streak": found.longest_streak, "check-ins": found.total_checkins,
        "referrals": found.referral_count, "last check-in": _cell(found.last_checkin_day) or "-",
        "pro": "yes" if found.pro else "no", "pro until": _cell(found.pro_until) or "-",
        "time zone": found.timezone,
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


def cmd_leaderboard(args: argparse.Namespace) -> int:
    with _reading() as conn:
        rows = queries.leaderboard(conn, args.kind, args.limit)
    if not rows:
        print(f"nobody on the {args.kind} leaderboard yet")
        return 0
    _print_table(["RANK", "PARTNER", "XP" if args.kind == "xp" else "STREAK"],
                 [[row.rank, row.partner_id, row.score] for row in rows])
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
    from rewards import db, tables
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
    demo.set_defaults(handler=cmd_demo)

    for name, handler, text in (("profile", cmd_profile, "a partner's balance, streaks and plan"),
                                ("tasks", cmd_tasks, "every task with status, progress and XP a claim pays now"),
                                ("history", cmd_history, "a partner's ledger rows, newest first")):
        reader = commands.add_parser(name, help=text)
        reader.add_argument("partner_id", type=int)
        if name == "history":
            reader.add_argument("--limit", type=_limit, default=20, help="rows to show (default 20)")
        reader.set_defaults(handler=handler)
    board = commands.add_parser("leaderboard", help="all-time XP or current streak, best first")
    board.add_argument("kind", nargs="?", choices=("xp", "streak"), default="xp")
    board.add_argument("--limit", type=_limit, default=10, help="rows to show (default 10)")
    board.set_defaults(handler=cmd_leaderboard)

    _add_enqueue(commands)

    reconcile = commands.add_parser("reconcile", help="check balances against the ledger; exit 1 on mismatches")
    reconcile.add_argument("--full", action="store_true",
                           help="check every partner, not only those with ledger rows since the last run")
    reconcile.set_defaults(handler=cmd_reconcile)
    return parser


def _add_enqueue(commands) -> None:
    enqueue = commands.add_parser("enqueue", help="send a job and print its result")
    jobs = enqueue.add_subparsers(dest="job", required=True, metavar="JOB")
    checkin = jobs.add_parser("checkin", help="rewards.checkin")
    checkin.add_argument("partner_id", type=int)
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
    except (CliError, settings_module.ConfigError, CatalogError) as error:
        print(f"rewards: {error}", file=sys.stderr)
        return 2
    except OperationalError as error:
        print(f"rewards: cannot reach the database: {error.orig}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

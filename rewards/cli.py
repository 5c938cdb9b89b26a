"""The `rewards` command: operate the engine from a terminal.

    rewards db upgrade                       migrate the database to the latest schema
    rewards demo --partners 50               a simulated month through a real worker
    rewards enqueue checkin 42               send a job through the client, print its result
    rewards enqueue partner 42 --timezone Asia/Tokyo --pro-until 2027-01-01T00:00:00+00:00
    rewards reconcile [--full]               check the ledger invariants, print the mismatches

Errors are one line naming the problem and what to do; exit codes: 0 done,
1 the job was rejected or failed, or reconcile found mismatches, 2 bad usage
or configuration (or another reconcile run holds the lock).
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from typing import Any

from rewards import settings as settings_module


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


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


def cmd_enqueue(args: argparse.Namespace) -> int:
    from rewards.client import RewardsClient

    client = RewardsClient()
    try:
        if args.job == "checkin":
            sent = client.checkin(args.partner_id, occurred_at=args.at)
        else:
            options: dict[str, Any] = {}
            if args.pro_until is not None:
                options["pro_until"] = None if args.pro_until == "none" else args.pro_until
            if args.timezone is not None:
                options["timezone"] = args.timezone
            if not options:
                raise CliError("give --pro-until and/or --timezone: there is nothing to update")
            sent = client.update_partner(args.partner_id, occurred_at=args.at, **options)
        print(f"sent {sent.id}")
        return _wait(sent, args.timeout)
    finally:
        client.close()


def cmd_demo(args: argparse.Namespace) -> int:
    from rewards.demo import run_demo

    if args.partners < 2 or args.days < 1:
        raise CliError("the demo needs --partners of at least 2 and --days of at least 1")
    return run_demo(args.partners, args.days, args.seed, args.database_url, args.broker_url)


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

    enqueue = commands.add_parser("enqueue", help="send a job and print its result")
    jobs = enqueue.add_subparsers(dest="job", required=True, metavar="JOB")
    checkin = jobs.add_parser("checkin", help="rewards.checkin")
    partner = jobs.add_parser("partner", help="rewards.partner.update")
    partner.add_argument("--pro-until", help="ISO-8601 instant with offset, or 'none' to end PRO")
    partner.add_argument("--timezone", help="IANA time zone name, e.g. Europe/Berlin")
    for job_parser in (checkin, partner):
        job_parser.add_argument("partner_id", type=int)
        job_parser.add_argument("--at", help="occurred_at, ISO-8601 with offset (default: now)")
        job_parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the result")
        job_parser.set_defaults(handler=cmd_enqueue)

    reconcile = commands.add_parser("reconcile", help="check balances against the ledger; exit 1 on mismatches")
    reconcile.add_argument("--full", action="store_true",
                           help="check every partner, not only those with ledger rows since the last run")
    reconcile.set_defaults(handler=cmd_reconcile)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (CliError, settings_module.ConfigError) as error:
        print(f"rewards: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

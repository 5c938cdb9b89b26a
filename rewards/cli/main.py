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
    rewards status                           queues, failed jobs, outbox, leaderboards, maintenance runs
    rewards access rabbitmq [--apply]        each role's RabbitMQ user: a definitions file, or set them
    rewards access redis-acl [--apply URL]   the Redis users of each role: an ACL file, or set them

Errors are one line naming the problem and what to do; exit codes: 0 done,
1 the job was rejected or failed, the partner is unknown, or reconcile found
mismatches, 2 bad usage or configuration (or another reconcile run holds the lock).

This module builds the command group; each command module adds its own
sub-commands to it (`add_commands`) and never imports this one.
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.exc import OperationalError

from rewards import settings as settings_module
from rewards.catalog import CatalogError
from rewards.cli import access, demo, enqueue, operations, schema, status, views
from rewards.cli.common import CliError, NotFound

# In the order `rewards --help` lists them.
COMMAND_MODULES = (schema, demo, views, enqueue, operations, status, access)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rewards", description="Operate the rewards engine.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_commands(commands)
    return parser


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

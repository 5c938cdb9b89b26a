"""`rewards enqueue JOB ...`: send one job through the client, wait for it, print its result.

Exit code 1 when the job comes back rejected.
"""

from __future__ import annotations

import argparse
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout

from rewards.cli.common import CliError, print_result
from rewards.cli.tables import render
from rewards.client import RewardsClient


def _print_batch_result(result: dict[str, Any]) -> None:
    print_result({name: value for name, value in result.items() if name != "items"})
    rows = [[index, item.get("partner_id", "-"), item.get("day", "-"), item["status"],
             item.get("reason") or "", item.get("xp_granted", "")]
            for index, item in enumerate(result.get("items", []))]
    print(render(["#", "partner", "day", "status", "reason", "xp granted"], rows))


def _wait(async_result, timeout_s: float) -> int:
    try:
        result = async_result.get(timeout=timeout_s)
    except CeleryTimeout:
        raise CliError(f"no result within {timeout_s:g} s (job id {async_result.id}); "
                       "is a worker consuming the queue? Start one with: "
                       "celery -A workers worker -Q checkins,claims,operator,maintenance") from None
    if "items" in result:
        _print_batch_result(result)
    else:
        print_result(result)
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
    client = RewardsClient()
    try:
        sent = _SENDERS[args.job](client, args)
        print(f"sent {sent.id}")
        return _wait(sent, args.timeout)
    finally:
        client.close()


def add_commands(commands) -> None:
    """`rewards enqueue JOB`: one sub-command per job the client sends."""
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

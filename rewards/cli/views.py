"""The read-side commands of `rewards`: a partner's numbers, leaderboards, the streak calendar, the report.

    rewards profile 42                       balance, streaks, referrals, plan, badges
    rewards tasks 42                         every task: status, progress, XP a claim pays now
    rewards history 42 [--limit 20]          ledger rows, newest first
    rewards leaderboard [xp|weekly|streak] [--limit 10] [--around ID]
    rewards leaderboard rebuild              rebuild the Redis boards from PostgreSQL
    rewards leaderboard reconcile            report drift between Redis and PostgreSQL (exit 1 on drift)
    rewards calendar 42 [2026-03]            a month: bonus, checked-in, frozen and missed days
    rewards preview 42                       what a check-in now would pay
    rewards report [--days 30] [--until YYYY-MM-DD] [--html FILE]
                                             check-ins, streaks, return, task funnel, XP, PRO vs regular
"""

from __future__ import annotations

import argparse
import calendar
from datetime import date
from pathlib import Path

from rewards import analytics, db, leaderboards, queries, report_html
from rewards import settings as settings_module
from rewards.cli.common import CliError, cell, print_result, print_table, reading, row_limit
from rewards.cli.tables import render
from rewards.models import utcnow
from schedules import update_leaderboards

BOARD_ACTIONS = ("rebuild", "reconcile")
SCORE_HEADERS = {leaderboards.XP: "XP", leaderboards.WEEKLY: "XP THIS WEEK", leaderboards.STREAK: "STREAK"}
CALENDAR_MARKS = {queries.BONUS: "★", queries.CHECKED_IN: "✓", queries.FROZEN: "❄", queries.MISSED: "·",
                  queries.UPCOMING: " "}


# -- leaderboards ------------------------------------------------------------------

def cmd_leaderboard(args: argparse.Namespace) -> int:
    if args.kind in BOARD_ACTIONS:
        return _board_action(args.kind)
    store = leaderboards.store_from_settings()
    board = leaderboards.board(args.kind, utcnow())
    try:
        with reading() as conn:
            if args.around is not None:
                view = leaderboards.around(conn, board, args.around, args.radius, store=store)
            else:
                view = leaderboards.top(conn, board, args.limit, store=store)
    finally:
        if store is not None:
            store.close()
    _print_board(view, args.around)
    return 0


def _print_board(view: leaderboards.BoardView, around: int | None) -> None:
    source = "Redis" if view.source == "redis" else "SQL"
    print(f"{view.board.title} (read from {source})")
    if view.fallback_reason:
        print(f"note: {view.fallback_reason}; answered from SQL instead")
    if not view.entries:
        print(f"partner {around} is not on this board" if around is not None else "nobody on this board yet")
        return
    headers = ["RANK", "PARTNER", SCORE_HEADERS[view.board.kind]]
    rows = [[entry.rank, str(entry.partner_id), entry.score] for entry in view.entries]
    if around is not None:
        headers.append("")
        rows = [row + ["◀" if entry.partner_id == around else ""] for row, entry in zip(rows, view.entries)]
    print(render(headers, rows))


def _board_action(action: str) -> int:
    store = leaderboards.store_from_settings(timeout_s=30)
    if store is None:
        raise CliError("REWARDS_REDIS_URL is not set: without Redis the boards are read from SQL "
                       "and there is nothing to rebuild or reconcile")
    current = settings_module.get()
    lag_s = update_leaderboards.lag_s(current)
    try:
        if action == "rebuild":
            summary = update_leaderboards.rebuild(db.get_engine(), store, utcnow(), lag_s=lag_s)
            if summary.skipped:
                raise CliError(f"a leaderboard update holds the lock ({summary.skipped}); try again")
            print(render(["BOARD", "PARTNERS"], sorted(summary.details["boards"].items()),
                         title=f"rebuilt in {summary.took_ms:,.0f} ms"))
            return 0
        drifts = update_leaderboards.drift(db.get_engine(), store, utcnow(),
                                           batch_size=current.maintenance.batch_size, lag_s=lag_s)
    finally:
        store.close()
    return _print_drift(drifts)


def _print_drift(drifts: list) -> int:
    print(render(["BOARD", "IN SQL", "IN REDIS", "MISSING", "WRONG", "EXTRA"],
                 [[d.board.key, d.in_sql, d.in_redis, d.missing, d.wrong, d.extra] for d in drifts]))
    examples = [example for d in drifts for example in d.examples]
    for example in examples:
        print(f"  {example}")
    if any(not d.clean for d in drifts):
        print("Redis has drifted from PostgreSQL; rebuild it with: rewards leaderboard rebuild")
        return 1
    print("Redis matches PostgreSQL on every board.")
    return 0


# -- a partner's views -------------------------------------------------------------

def cmd_profile(args: argparse.Namespace) -> int:
    with reading() as conn:
        found = queries.profile(conn, args.partner_id)
    print_result({
        "partner": found.partner_id, "xp": found.xp, "streak": found.checkin_streak,
        "longest streak": found.longest_streak, "check-ins": found.total_checkins,
        "referrals": found.referral_count, "last check-in": cell(found.last_checkin_day) or "-",
        "pro": "yes" if found.pro else "no", "pro until": cell(found.pro_until) or "-",
        "time zone": found.timezone,
        "badges": ", ".join(f"{badge.badge} ({badge.streak_days} days)" for badge in found.badges) or "-",
    })
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    with reading() as conn:
        views = queries.tasks(conn, args.partner_id)
    print_table(["TASK", "TYPE", "STATUS", "PROGRESS", "XP", "TITLE"], [
        [view.task_id, view.type, view.status + (" (claimable)" if view.claimable else ""),
         str(view.progress) if view.progress.required else None,
         None if view.status == "COMPLETED" else view.xp_on_claim, view.title]
        for view in views
    ])
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with reading() as conn:
        entries = queries.history(conn, args.partner_id, args.limit)
    if not entries:
        print(f"partner {args.partner_id} has no ledger entries yet")
        return 0
    print_table(["ID", "WHEN (UTC)", "TYPE", "XP", "BALANCE", "DESCRIPTION"], [
        [entry.entry_id, entry.occurred_at, entry.entry_type, entry.amount, entry.balance_after,
         entry.description]
        for entry in entries
    ])
    return 0


def cmd_calendar(args: argparse.Namespace) -> int:
    month = args.month or utcnow().strftime("%Y-%m")
    try:
        with reading() as conn:
            days = queries.streak_calendar(conn, args.partner_id, month)
    except ValueError as error:
        raise CliError(str(error)) from None
    print(calendar_grid(args.partner_id, days))
    return 0


def calendar_grid(partner_id: int, days: list[queries.CalendarDay]) -> str:
    """A month as a Monday-first grid, one mark per day, then a legend and the month's totals."""
    first = days[0].day
    lines = [f"{calendar.month_name[first.month]} {first.year} · partner {partner_id}",
             "  ".join(f"{name:>4}" for name in ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"))]
    cells = ["    "] * first.weekday()
    for entry in days:
        cells.append(f"{entry.day.day:>2} {CALENDAR_MARKS[entry.status]}")
        if len(cells) == 7:
            lines.append("  ".join(cells).rstrip())
            cells = []
    if cells:
        lines.append("  ".join(cells).rstrip())
    counts = {status: sum(1 for entry in days if entry.status == status) for status in CALENDAR_MARKS}
    lines.append(f"★ bonus day {counts[queries.BONUS]}   ✓ checked in {counts[queries.CHECKED_IN]}   "
                 f"❄ frozen {counts[queries.FROZEN]}   · missed {counts[queries.MISSED]}")
    return "\n".join(lines)


def cmd_preview(args: argparse.Namespace) -> int:
    with reading() as conn:
        found = queries.checkin_preview(conn, args.partner_id)
    if found.already_checked_in:
        print(f"partner {found.partner_id} has checked in today ({found.day}, streak {found.streak_days}); "
              "a check-in now pays nothing")
        return 0
    bonus = f" + {found.bonus_xp} streak bonus" if found.bonus_xp else ""
    pro = f") × {found.multiplier} PRO" if found.multiplier > 1 else ")"
    freeze = " (a streak freeze bridges the missed day)" if found.frozen_days else ""
    print(f"a check-in now ({found.day}) would be day {found.streak_days} of the streak{freeze}: "
          f"{found.xp_granted} XP = ({found.base_xp}{bonus}{pro}")
    return 0


# -- the report --------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    try:
        first_day, last_day = analytics.window(args.days, args.until)
    except ValueError as error:
        raise CliError(str(error)) from None
    with reading() as conn:
        found = analytics.report(conn, first_day, last_day)
    print(report_text(found))
    if args.html:
        path = write_html(found, Path(args.html))
        print(f"\nwrote {path}")
    return 0


def write_html(found: analytics.Report, path: Path) -> Path:
    path.write_text(report_html.render(found), encoding="utf-8")
    return path.resolve()


def _percent(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.1f}%"


def report_text(found: analytics.Report) -> str:
    """The report as terminal tables, newest day first."""
    streaks, back = found.streaks, found.retention
    types = [name for name in ("checkin", "streak_bonus", "task_reward", "adjustment", "correction")
             if any(day.by_type[name] for day in found.xp_daily)]
    return "\n\n".join((
        f"Rewards report {found.first_day} to {found.last_day} ({found.days} days)",
        render(["DAY", "CHECK-INS", "ACTIVE SO FAR", "RATE"],
               [[d.day.isoformat(), d.checkins, d.active_base, _percent(d.rate)] for d in reversed(found.daily)],
               title="Check-ins per day (rate: share of partners active so far)"),
        render(["PARTNERS", "WITH A STREAK", "AVERAGE", "MEDIAN"],
               [[streaks.partners, streaks.with_streak, streaks.average_days, streaks.median_days]],
               title="Current streaks (days)"),
        render(["STREAK", "PARTNERS"], streaks.distribution, title="Streak lengths"),
        render(["NEW", "D1 RETURNED", "D1 RATE", "D7 RETURNED", "D7 RATE"],
               [[back.new_partners, f"{back.d1_returned}/{back.d1_measurable}", _percent(back.d1_rate),
                 f"{back.d7_returned}/{back.d7_measurable}", _percent(back.d7_rate)]],
               title="Return of partners whose first check-in was in the window"),
        render(["TASK", "STARTED", "COMPLETED", "EXPIRED", "OPEN", "CONVERSION"],
               [[t.task_id, t.started, t.completed, t.expired, t.in_progress, _percent(t.conversion)]
                for t in found.funnel], title="Task funnel (attempts started in the window)"),
        render(["TASK", "STARTED", "COMPLETED"], [[t.task_id, t.started, t.completed] for t in found.popular],
               title="Most popular tasks"),
        render(["DAY", *[name.upper() for name in types], "TOTAL"],
               [[d.day.isoformat(), *(d.by_type[name] for name in types), d.total] for d in reversed(found.xp_daily)],
               title="XP issued per day (UTC) by entry type"),
        render(["SEGMENT", "PARTNERS", "AVG XP", "AVG STREAK", "CHECK-INS", "RATE", "XP ISSUED"],
               [[s.name, s.partners, s.average_xp, s.average_streak_days, s.checkins,
                 _percent(s.checkin_rate(found.days)), s.xp_issued] for s in found.segments],
               title="PRO vs regular (PRO as of now)"),
    ))


# -- the parser --------------------------------------------------------------------

def _month(text: str) -> str:
    try:
        date.fromisoformat(text + "-01")
    except ValueError:
        raise argparse.ArgumentTypeError(f"a month looks like 2026-03, got {text!r}") from None
    return text


def add_commands(commands) -> None:
    """Add the read-side commands to the `rewards` parser."""
    _add_partner_reads(commands)
    board = commands.add_parser("leaderboard", help="a leaderboard (xp, weekly, streak), or rebuild / reconcile")
    board.add_argument("kind", nargs="?", choices=(*leaderboards.KINDS, *BOARD_ACTIONS), default="xp")
    board.add_argument("--limit", type=row_limit, default=10, help="rows to show (default 10)")
    board.add_argument("--around", type=int, metavar="ID", help="show this partner's rank and neighbours")
    board.add_argument("--radius", type=int, default=5, choices=range(0, 51), metavar="N",
                       help="neighbours either side with --around (default 5)")
    board.set_defaults(handler=cmd_leaderboard)

    month = commands.add_parser("calendar", help="a partner's month: bonus, checked-in, frozen, missed days")
    month.add_argument("partner_id", type=int)
    month.add_argument("month", nargs="?", type=_month, help="YYYY-MM (default: this month, UTC)")
    month.set_defaults(handler=cmd_calendar)

    preview = commands.add_parser("preview", help="what a check-in now would pay")
    preview.add_argument("partner_id", type=int)
    preview.set_defaults(handler=cmd_preview)

    report = commands.add_parser("report", help="analytics: check-ins, streaks, return, task funnel, XP")
    report.add_argument("--days", type=int, default=30, help="how many days (default 30)")
    report.add_argument("--until", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="the window's last day (default today, UTC)")
    report.add_argument("--html", metavar="FILE", help="also write the report with charts to this HTML file")
    report.set_defaults(handler=cmd_report)


def _add_partner_reads(commands) -> None:
    for name, handler, text in (("profile", cmd_profile, "a partner's balance, streaks and plan"),
                                ("tasks", cmd_tasks, "every task with status, progress and XP a claim pays now"),
                                ("history", cmd_history, "a partner's ledger rows, newest first")):
        reader = commands.add_parser(name, help=text)
        reader.add_argument("partner_id", type=int)
        if name == "history":
            reader.add_argument("--limit", type=row_limit, default=20, help="rows to show (default 20)")
        reader.set_defaults(handler=handler)

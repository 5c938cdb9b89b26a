"""Compare a chaos run with the reference model: the figures of the final table."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Connection, text

from chaos.model import Model
from chaos.traffic import Job

_PARTNERS = text("SELECT id, xp, checkin_streak, total_checkins, referral_count, timezone FROM partner")
_COMPLETED = text("SELECT partner_id, task_id FROM partner_task WHERE status = 'COMPLETED'")
_ADJUSTMENTS = text("SELECT request_id FROM adjustment")
_INVARIANTS = {
    "xp == SUM(xp_ledger.amount)": text(
        "SELECT COUNT(*) FROM partner p WHERE p.xp <> COALESCE((SELECT SUM(amount) FROM xp_ledger l "
        "WHERE l.partner_id = p.id), 0)"),
    "last balance_after == xp": text(
        "SELECT COUNT(*) FROM partner p JOIN LATERAL (SELECT balance_after FROM xp_ledger l "
        "WHERE l.partner_id = p.id ORDER BY id DESC LIMIT 1) last ON true WHERE last.balance_after <> p.xp"),
    "referral_count == referrals": text(
        "SELECT COUNT(*) FROM partner p WHERE p.referral_count <> (SELECT COUNT(*) FROM referral r "
        "WHERE r.referrer_id = p.id)"),
    "xp >= 0, no zero ledger amount": text(
        "SELECT (SELECT COUNT(*) FROM partner WHERE xp < 0) + (SELECT COUNT(*) FROM xp_ledger WHERE amount = 0)"),
}


@dataclass
class Figures:
    sent: int = 0
    unique: int = 0
    statuses: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    lost: int = 0
    double_credited: int = 0
    wrongly_rejected: int = 0
    wrongly_applied: int = 0
    falsely_failed: int = 0
    stuck: int = 0
    partners_differing: int = 0
    invariants_broken: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not (self.lost or self.double_credited or self.wrongly_rejected or self.wrongly_applied
                    or self.falsely_failed or self.stuck or self.partners_differing or self.invariants_broken)


def expected(batches: list[list[Job]]) -> tuple[Model, dict[str, str]]:
    """The model after every batch, and each unique job's expected status (by its canonical form)."""
    model = Model()
    outcomes = {}
    for batch in batches:
        outcomes |= {canonical(job): status for job, status in model.fold(batch)}
    return model, outcomes


def canonical(job: Job) -> str:
    return job.name + repr(sorted(job.kwargs.items()))


def compare(conn: Connection, batches: list[list[Job]], sent: list[tuple[Job, str]],
            results: dict[str, dict], leftover_messages: int, failure_rows: int, dead_letters: int) -> Figures:
    model, outcomes = expected(batches)
    figures = Figures(sent=len(sent), unique=len(outcomes))
    by_job: dict[str, list[dict | None]] = defaultdict(list)
    for job, job_id in sent:
        by_job[canonical(job)].append(results.get(job_id))
    for key, deliveries in by_job.items():
        _judge(figures, outcomes[key], deliveries, key)
    figures.falsely_failed += failure_rows + dead_letters
    figures.stuck += leftover_messages
    _compare_partners(conn, model, figures)
    for name, statement in _INVARIANTS.items():
        if conn.execute(statement).scalar_one():
            figures.invariants_broken.append(name)
    return figures


def _judge(figures: Figures, want: str, deliveries: list[dict | None], key: str) -> None:
    for result in deliveries:
        if result is None:
            figures.stuck += 1
            figures.examples.append(f"no result: {key}")
            continue
        if result["status"] != "SUCCESS":
            figures.falsely_failed += 1
            figures.examples.append(f"{result['status']}: {key}: {str(result.get('result'))[:120]}")
            continue
        status = result["result"]["status"]
        figures.statuses[status] += 1
        if status == "rejected":
            reason = result["result"].get("reason")
            figures.rejected[reason] += 1
            if want != f"rejected:{reason}":
                figures.wrongly_rejected += 1
                figures.examples.append(f"rejected {reason}, expected {want}: {key}")
        elif want.startswith("rejected"):
            figures.wrongly_applied += 1
            figures.examples.append(f"{status}, expected {want}: {key}")


def _compare_partners(conn: Connection, model: Model, figures: Figures) -> None:
    rows = {row.id: row for row in conn.execute(_PARTNERS)}
    completed = {(row.partner_id, row.task_id) for row in conn.execute(_COMPLETED)}
    for partner_id, want in model.partners.items():
        row = rows.get(partner_id)
        if row is None:
            figures.lost += 1 + want.checkins
            figures.partners_differing += 1
            continue
        figures.lost += max(0, want.checkins - row.total_checkins)
        figures.lost += max(0, want.referral_count - row.referral_count)
        figures.lost += len({(partner_id, t) for t in want.completed} - completed)
        figures.double_credited += row.xp > want.xp
        mine = (row.xp, row.checkin_streak, row.total_checkins, row.referral_count, row.timezone)
        theirs = (want.xp, want.streak, want.checkins, want.referral_count, want.timezone)
        if mine != theirs:
            figures.partners_differing += 1
            figures.examples.append(f"partner {partner_id}: engine {mine}, model {theirs}")
        if row.xp < want.xp:
            figures.lost += 0 if want.checkins > row.total_checkins else 1
    figures.double_credited += len(set(rows) - set(model.partners))

"""The jobs of a chaos run, from a seed: every kind, with duplicates, delivered in any order.

Three batches, each sent shuffled with 5% of its jobs twice and drained
before the next. Batch 0 sets partners up (PRO plans, time zones, task
starts). Batch 1 is the whole run's traffic at once: every partner's
check-ins of every day, referrals and adjustments, so a partner's days
arrive in any order, interleaved with each other and with duplicates, and
retries and redelivery reorder them further. The engine must converge
(DESIGN.md section 6a): the reference model folds the same check-ins in day
order. The last batch claims tasks: a claim is judged against what is
applied when it runs, so it follows the referrals it depends on.

Every check-in lies inside the late window (the harness sets
REWARDS_LATE_WINDOW_DAYS to cover the span). PRO partners miss a day now and
then, so the streak freeze is used; some plans end halfway, so the
multiplier follows the plan history by occurred_at.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

# Days in the past, so no job is `in_future`, at noon UTC so every time zone
# used here keeps the UTC date.
TIME_ZONES = ("UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin")
DUPLICATE_SHARE = 0.05
# PRO partners skip a day this often (to use the freeze); regular ones miss 20% of days.
PRO_MISS_SHARE = 0.1
REGULAR_MISS_SHARE = 0.2


@dataclass(frozen=True)
class Job:
    name: str
    kwargs: dict
    duplicate: bool = False


def _at(start: datetime, day: int, hour: int = 12) -> str:
    return (start + timedelta(days=day, hours=hour)).isoformat()


def plan(seed: int, partners: int, days: int) -> list[list[Job]]:
    """Unique jobs per batch: set-up, the run's traffic, claims."""
    rng = random.Random(seed)
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days + 5)
    ids = list(range(1, partners + 1))
    pro = set(rng.sample(ids, partners // 4))
    setup = [job for pid in ids for job in _setup(rng, pid, pid in pro, start, days)]
    traffic: list[Job] = []
    next_referee = partners + 1
    for day in range(1, days + 1):
        traffic += [Job("rewards.checkin", {"partner_id": pid, "occurred_at": _at(start, day)})
                    for pid in ids if rng.random() >= (PRO_MISS_SHARE if pid in pro else REGULAR_MISS_SHARE)]
        for referrer in rng.sample(ids, max(1, partners // 8)):
            referee = referrer if rng.random() < 0.05 else next_referee
            next_referee += referee != referrer
            traffic.append(Job("rewards.referral.record", {"referrer_id": referrer, "referee_id": referee,
                                                           "occurred_at": _at(start, day, 13)}))
        for n, pid in enumerate(rng.sample(ids, max(1, partners // 20))):
            traffic.append(Job("rewards.adjust", {"partner_id": pid, "amount": rng.randint(1, 500),
                                                  "reason": "chaos goodwill", "request_id": f"chaos-{day}-{n}"}))
    claims = [Job("rewards.task.claim", {"partner_id": pid, "task_id": task_id,
                                         "occurred_at": _at(start, days + 1)})
              for pid in ids for task_id in ("telegram_bot", "invite_3_friends", "banking_app")
              if rng.random() < 0.7]
    return [setup, traffic, claims]


def _setup(rng: random.Random, pid: int, pro: bool, start: datetime, days: int) -> list[Job]:
    """A partner's set-up jobs: a PRO plan (a third of them end halfway) or a time zone, task starts."""
    jobs = []
    if pro:
        until_day = days // 2 if rng.random() < 1 / 3 else 1000
        jobs.append(Job("rewards.partner.update", {"partner_id": pid, "occurred_at": _at(start, 0, 9),
                                                   "pro_until": _at(start, until_day, 0)}))
    elif rng.random() < 0.2:
        jobs.append(Job("rewards.partner.update", {"partner_id": pid, "occurred_at": _at(start, 0, 9),
                                                   "timezone": rng.choice(TIME_ZONES)}))
    for task_id in ("telegram_bot", "invite_3_friends"):
        if rng.random() < 0.4:
            jobs.append(Job("rewards.task.start", {"partner_id": pid, "task_id": task_id,
                                                   "occurred_at": _at(start, 0, 10)}))
    return jobs


def deliveries(batch: list[Job], rng: random.Random) -> list[Job]:
    """The batch as sent: 5% of its jobs twice, all shuffled."""
    sent = list(batch) + [Job(job.name, job.kwargs, duplicate=True)
                          for job in batch if rng.random() < DUPLICATE_SHARE]
    rng.shuffle(sent)
    return sent

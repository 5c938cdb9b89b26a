"""The public job contract: task names and the queue each one travels on.

Upstream apps enqueue by these names; renaming one is a breaking change.
Both the workers' routing (celeryconfig) and `rewards.client` read this table.
"""

from kombu import Exchange, Queue

CHECKIN = "rewards.checkin"
CHECKIN_BATCH = "rewards.checkin.batch"
TASK_START = "rewards.task.start"
TASK_CLAIM = "rewards.task.claim"
REFERRAL_RECORD = "rewards.referral.record"
PARTNER_UPDATE = "rewards.partner.update"
ADJUST = "rewards.adjust"

QUEUE_CHECKINS = "checkins"
QUEUE_CLAIMS = "claims"
QUEUE_MAINTENANCE = "maintenance"
QUEUES = (QUEUE_CHECKINS, QUEUE_CLAIMS, QUEUE_MAINTENANCE)

# Check-ins are the daily spike and get their own queue, so a burst of them
# never delays a claim; maintenance never competes with partner-facing jobs.
QUEUE_BY_TASK = {
    CHECKIN: QUEUE_CHECKINS,
    CHECKIN_BATCH: QUEUE_CHECKINS,
    TASK_START: QUEUE_CLAIMS,
    TASK_CLAIM: QUEUE_CLAIMS,
    REFERRAL_RECORD: QUEUE_CLAIMS,
    PARTNER_UPDATE: QUEUE_CLAIMS,
    ADJUST: QUEUE_CLAIMS,
}
MAINTENANCE_PREFIX = "rewards.maintenance."

# Maintenance jobs, run by beat (schedules/beat.py) on the maintenance queue.
# Each takes an optional `now` (ISO-8601 with offset) so a run can be replayed
# for a given instant; beat sends none and the job uses its clock.
MAINTENANCE_EXPIRE_STREAKS = MAINTENANCE_PREFIX + "expire_streaks"
MAINTENANCE_RECONCILE = MAINTENANCE_PREFIX + "reconcile"
MAINTENANCE_STREAK_RISK = MAINTENANCE_PREFIX + "streak_risk"
MAINTENANCE_RELAY_OUTBOX = MAINTENANCE_PREFIX + "relay_outbox"
MAINTENANCE_SWEEP_STALE_TASKS = MAINTENANCE_PREFIX + "sweep_stale_tasks"
MAINTENANCE_UPDATE_LEADERBOARDS = MAINTENANCE_PREFIX + "update_leaderboards"


def kombu_queues() -> list[Queue]:
    """The queues, each bound to a direct exchange of its own name.

    Declared the same way by workers and producers: a bare Queue(name) would
    be bound to Celery's default exchange and key, and RabbitMQ would then
    copy a job into every queue bound there.
    """
    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES]


def queue_for(task_name: str) -> str:
    if task_name.startswith(MAINTENANCE_PREFIX):
        return QUEUE_MAINTENANCE
    try:
        return QUEUE_BY_TASK[task_name]
    except KeyError:
        raise ValueError(f"{task_name!r} is not a rewards job; known: {sorted(QUEUE_BY_TASK)}") from None


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery router: every rewards job to its contract queue."""
    if name.startswith("rewards."):
        return {"queue": queue_for(name)}
    return None

"""The public job contract: task names, the queue each travels on, and who may send it.

Upstream apps enqueue by these names; renaming one is a breaking change.
The workers' routing (celeryconfig), `rewards.client`, the worker's arrival
check (workers/base.py) and the broker permissions (rewards.access) all read
the tables below, so a job's queue and its senders are written once.
"""

from kombu import Exchange, Queue

CHECKIN = "rewards.checkin"
CHECKIN_BATCH = "rewards.checkin.batch"
CLAIMS_BATCH = "rewards.claims.batch"
TASK_START = "rewards.task.start"
TASK_CLAIM = "rewards.task.claim"
REFERRAL_RECORD = "rewards.referral.record"
PARTNER_UPDATE = "rewards.partner.update"
ADJUST = "rewards.adjust"

QUEUE_CHECKINS = "checkins"
QUEUE_CLAIMS = "claims"
QUEUE_OPERATOR = "operator"
QUEUE_MAINTENANCE = "maintenance"
QUEUES = (QUEUE_CHECKINS, QUEUE_CLAIMS, QUEUE_OPERATOR, QUEUE_MAINTENANCE)

# Check-ins are the daily spike and get their own queue, so a burst of them
# never delays a claim; maintenance never competes with partner-facing jobs.
# Jobs that create XP outside the rules travel on `operator`, which no
# upstream app may write to: a queue is the unit a broker can grant.
QUEUE_BY_TASK = {
    CHECKIN: QUEUE_CHECKINS,
    CHECKIN_BATCH: QUEUE_CHECKINS,
    TASK_START: QUEUE_CLAIMS,
    TASK_CLAIM: QUEUE_CLAIMS,
    REFERRAL_RECORD: QUEUE_CLAIMS,
    PARTNER_UPDATE: QUEUE_CLAIMS,
    CLAIMS_BATCH: QUEUE_CLAIMS,
    ADJUST: QUEUE_OPERATOR,
}
# What a rewards.claims.batch may carry: the claims queue's partner jobs, never
# an operator's (a batch travels on the queue upstream apps may write to).
CLAIMS_BATCH_JOBS = (TASK_START, TASK_CLAIM, REFERRAL_RECORD, PARTNER_UPDATE)
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
MAINTENANCE_RETENTION = MAINTENANCE_PREFIX + "retention"
MAINTENANCE_JOBS = (MAINTENANCE_EXPIRE_STREAKS, MAINTENANCE_RECONCILE, MAINTENANCE_STREAK_RISK,
                    MAINTENANCE_RELAY_OUTBOX, MAINTENANCE_SWEEP_STALE_TASKS, MAINTENANCE_UPDATE_LEADERBOARDS,
                    MAINTENANCE_RETENTION)

# A message header: when rewards.client sent the job (Unix seconds). Workers
# measure enqueue-to-commit latency from it (rewards_job_latency_seconds);
# producers in other languages may set it too.
SENT_AT_HEADER = "rewards_sent_at_s"

# Where the outbox relay publishes events for upstream apps (queue sink).
EVENTS_QUEUE = "rewards.events"

# The clients of the engine and the queues each may send to (DESIGN.md
# section 12). Workers consume every queue and send only retries of what
# they consume; they are not a sending role here.
ROLE_UPSTREAM = "upstream"
ROLE_OPERATOR = "operator"
ROLE_BEAT = "beat"
SENDING_ROLES = (ROLE_UPSTREAM, ROLE_OPERATOR, ROLE_BEAT)
QUEUES_BY_ROLE = {
    ROLE_UPSTREAM: (QUEUE_CHECKINS, QUEUE_CLAIMS),
    ROLE_OPERATOR: (QUEUE_CHECKINS, QUEUE_CLAIMS, QUEUE_OPERATOR, QUEUE_MAINTENANCE),
    ROLE_BEAT: (QUEUE_MAINTENANCE,),
}


# On RabbitMQ every queue is a quorum queue: a message is on a majority of
# the cluster's nodes before the publisher's confirm, so losing a node loses
# no job, and the queue goes on from the survivors. Each worker crash hands
# its messages back and counts a delivery; a message handed back
# DELIVERY_LIMIT times (a job that kills its worker every time) is moved to
# PARKED_QUEUE, at least once, instead of looping for ever (RabbitMQ 3) or
# being dropped (RabbitMQ 4 drops it after 20 unless a dead-letter exchange
# is set). Redis and the embedded broker ignore these arguments.
PARKED_QUEUE = "rewards.parked"
DELIVERY_LIMIT = 20
QUORUM = {"x-queue-type": "quorum"}
JOB_QUEUE_ARGUMENTS = QUORUM | {
    "x-delivery-limit": DELIVERY_LIMIT,
    "x-dead-letter-exchange": PARKED_QUEUE,
    # at-least-once dead-lettering needs reject-publish overflow; no queue has a length limit.
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}


def kombu_queues() -> list[Queue]:
    """The job queues as workers declare them, each bound to a direct exchange of its own name.

    A bare Queue(name) would be bound to Celery's default exchange and key,
    and RabbitMQ would then copy a job into every queue bound there.
    """
    return [Queue(name, Exchange(name, type="direct"), routing_key=name, queue_arguments=JOB_QUEUE_ARGUMENTS)
            for name in QUEUES]


def parked_queue() -> Queue:
    """Where RabbitMQ moves a job handed back DELIVERY_LIMIT times; no worker consumes it."""
    return Queue(PARKED_QUEUE, Exchange(PARKED_QUEUE, type="fanout"), queue_arguments=QUORUM)


def events_queue() -> Queue:
    """The outbox relay's `rewards.events` queue, replicated like the job queues."""
    return Queue(EVENTS_QUEUE, Exchange(EVENTS_QUEUE, type="direct"), routing_key=EVENTS_QUEUE,
                 queue_arguments=QUORUM)


def queue_for(task_name: str) -> str:
    if task_name.startswith(MAINTENANCE_PREFIX):
        return QUEUE_MAINTENANCE
    try:
        return QUEUE_BY_TASK[task_name]
    except KeyError:
        raise ValueError(f"{task_name!r} is not a rewards job; known: {sorted(QUEUE_BY_TASK)}") from None


AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def through_exchanges(broker_url: str) -> bool:
    """Whether the broker routes by exchange and grants write permission per exchange (RabbitMQ)."""
    return broker_url.partition("://")[0] in AMQP_SCHEMES


def destination(task_name: str, *, through_exchange: bool) -> dict:
    """Where a job is published: its queue, through the queue's own exchange or straight to it.

    On RabbitMQ the job goes through its queue's exchange, named explicitly
    because Celery otherwise publishes to a direct queue through the default
    exchange, from which every queue is reachable; write permission is
    granted per exchange, so the exchange decides who may send a job. Redis
    and the embedded broker have no permissions on exchanges and look the
    exchange's queues up in a table the workers write when they start (a job
    published before any worker started would be dropped): there the job is
    put straight on its queue.

    The queue is never declared on publish (`no_declare`): producers need no
    configure permission, and the workers own the topology.
    """
    name = queue_for(task_name)
    return {"queue": producer_queue(name), "exchange": name if through_exchange else "", "routing_key": name}


def producer_queue(name: str) -> Queue:
    """A queue as producers know it: the workers' binding, never declared."""
    return Queue(name, Exchange(name, type="direct", no_declare=True), routing_key=name, no_declare=True)


def router(broker_url: str):
    """Celery router (beat, and a worker's retries): every rewards job to its contract queue."""
    through_exchange = through_exchanges(broker_url)

    def route_task(name, args, kwargs, options, task=None, **kw):
        if name in QUEUE_BY_TASK or name.startswith(MAINTENANCE_PREFIX):
            return destination(name, through_exchange=through_exchange)
        return None  # not a job of the contract: it goes where the sender said

    return route_task

"""Celery settings for the rewards workers: every setting we rely on, each with its reason.

URLs and limits come from environment variables, read in `rewards.settings`.
"""

from rewards import catalog, contract
from rewards import settings as _settings
from schedules import beat

_env = _settings.get()

broker_url = _env.broker_url
result_backend = _env.result_backend

# JSON only on the wire: pickle from a broker is remote code execution, and
# producers in other languages speak JSON anyway.
accept_content = ["json"]
task_serializer = "json"
result_serializer = "json"
result_accept_content = ["json"]

# At-least-once: a message is acknowledged only after its job ran, and a job
# whose worker process died is handed back to the broker. Idempotency keys
# turn the resulting redeliveries into `duplicate` results.
task_acks_late = True
task_reject_on_worker_lost = True
# A job that failed for a reason of its own is recorded (workers/base.py) and
# acknowledged, so a poison message is not redelivered for ever. A job killed
# by its hard time limit is handed back instead: every wait on PostgreSQL is
# bounded well inside the limit, so a job that reaches it was stuck on
# something outside it (a frozen server), and must run again, not be dropped.
task_acks_on_failure = True
task_acks_on_timeout = False

# Jobs take about a millisecond; a few prefetched messages per process hide
# the broker round trip, and acks_late keeps them safe if the worker dies.
worker_prefetch_multiplier = 4

# One queue per kind of work, so a check-in spike never delays claims and
# maintenance never competes with partner-facing jobs; operator jobs have
# a queue of their own, which upstream apps may not write to. Workers
# declare the queues; what they (retries) and beat publish declares nothing.
task_queues = contract.kombu_queues()
task_default_queue = contract.QUEUE_CLAIMS
task_routes = (contract.router(broker_url),)
# On RabbitMQ they are quorum queues (rewards.contract); this consumer leaves
# out Celery's native delayed delivery, which needs topic exchanges, and
# declares the queue jobs handed back too often are parked in.
worker_consumer = "workers.consumer:Consumer"

# Results are read once by the producer, within seconds; an hour is ample,
# and bounds what Redis holds: at 10 million jobs a day, about 420,000
# results, ~0.3 GiB (docs/speed-and-scale.md, "Result storage";
# python -m benchmarks.result_size).
# A result read later than that is in PostgreSQL by key (RewardsClient.outcome).
result_expires = 3600
# A result also names its task, arguments, queue and the worker that ran it
# (the chaos harness picks a working worker to fault by it): ~190 B of a
# check-in result's ~790 B in Redis, worth keeping at an hour's expiry.
result_extended = True

# A job holds a row lock; one that runs away must not hold it for ever. The
# soft limit lets the job roll back cleanly before the hard kill.
task_time_limit = _env.task_time_limit_s
task_soft_time_limit = _env.task_time_limit_s * 0.9

# Redis: redeliver what a dead worker held once the visibility timeout has
# passed (minutes, derived from the time limit and the backoff cap: see
# rewards.settings.default_visibility_timeout_s); RabbitMQ: publisher
# confirms; filesystem: where messages live.
broker_transport_options = _settings.broker_transport_options(_env)
# Redis and filesystem:// are served by rewards.transport, which tells a job
# the queue it was really taken from (the producer writes the message's
# routing details, so they can be forged), and never hands a consumer a
# half-written file (kombu's filesystem transport can, and then the worker
# stops); producers select the same classes (rewards.client).
broker_transport = _settings.broker_transport(_env)
# A job that committed must not be reported failed because Redis blinked
# while its result was stored: retry the store, with exponential backoff, for
# about half a minute (each attempt gives up after 2 s). That stays inside the
# soft time limit; past it the outcome is still in PostgreSQL
# (RewardsClient.outcome, `rewards job KEY`) and the job is not recorded as failed.
result_backend_transport_options = _settings.result_backend_transport_options(_env)
result_backend_always_retry = True
result_backend_max_retries = 10
result_backend_base_sleep_between_retries_ms = 100
result_backend_max_sleep_between_retries_ms = 4_000

# Workers and producers start before the broker in a compose stack: keep trying.
broker_connection_retry_on_startup = True

# Events for Flower: workers report each job's states (received, started,
# succeeded...), which is what Flower builds its task list from. Senders
# (beat, retries, rewards.client) report no "sent" event: that would need
# every producer to write to, and declare, the event exchange, which
# least-privilege producers may not (docs/security.md, "RabbitMQ users").
worker_send_task_events = True
task_send_sent_event = False

# Log lines of our own are logfmt (rewards.logs); keep Celery's prefix short.
worker_task_log_format = "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"

timezone = "UTC"
enable_utc = True

# The maintenance schedule lives in one table: schedules/beat.py.
beat_schedule = beat.beat_schedule(_env.maintenance)

# Read the task catalogue now, while the worker starts: a bad entry stops
# start-up with a CatalogError naming the entry and field. (Celery logs and
# swallows exceptions raised in signal handlers such as worker_init, so the
# check cannot live in one.)
catalog.get()

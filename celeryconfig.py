"""Celery settings for the rewards workers: every setting we rely on, each with its reason.

URLs and limits come from environment variables, read in `rewards.settings`.
"""

from rewards import contract
from rewards import settings as _settings

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
# A job that failed for good, or ran past its time limit, is recorded and
# acknowledged, so a poison message is not redelivered for ever.
task_acks_on_failure = True
task_acks_on_timeout = True

# Jobs take about a millisecond; a few prefetched messages per process hide
# the broker round trip, and acks_late keeps them safe if the worker dies.
worker_prefetch_multiplier = 4

# One queue per kind of work, so a check-in spike never delays claims and
# maintenance never competes with partner-facing jobs.
task_queues = contract.kombu_queues()
task_default_queue = contract.QUEUE_CLAIMS
task_routes = (contract.route_task,)

# Results are read once by the producer; keep them a day, then let Redis drop them.
result_expires = 24 * 3600
result_extended = True

# A job holds a row lock; one that runs away must not hold it for ever. The
# soft limit lets the job roll back cleanly before the hard kill.
task_time_limit = _env.task_time_limit_s
task_soft_time_limit = _env.task_time_limit_s * 0.9

# Redis: redeliver what a dead worker held once the visibility timeout has
# passed (longer than any job or retry delay); filesystem: where messages live.
broker_transport_options = _settings.broker_transport_options(_env)
result_backend_transport_options = {"retry_policy": {"timeout": 5.0}}

# Workers and producers start before the broker in a compose stack: keep trying.
broker_connection_retry_on_startup = True

# Events for Flower: workers report task states, producers report sends.
worker_send_task_events = True
task_send_sent_event = True

# Log lines of our own are logfmt (rewards.logs); keep Celery's prefix short.
worker_task_log_format = "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"

timezone = "UTC"
enable_utc = True

# The maintenance schedule lives in one table: schedules/beat.py.
from schedules.beat import BEAT_SCHEDULE as beat_schedule  # noqa: E402

"""The whole beat schedule at a glance: `celery -A workers beat` (one per deployment).

Maintenance jobs (streak expiry, reconciliation, stale-task sweep) join this
table as they are built; each runs on the `maintenance` queue.
"""

BEAT_SCHEDULE: dict[str, dict] = {}

"""The beat schedule: every maintenance job on it, on the maintenance queue, as a registered task."""

import celeryconfig
from rewards import contract, settings
from schedules.beat import beat_schedule
from workers import app

BEAT_SCHEDULE = beat_schedule(settings.get().maintenance)


def registered_maintenance_tasks() -> set[str]:
    app.loader.import_default_modules()
    return {name for name in app.tasks if name.startswith(contract.MAINTENANCE_PREFIX)}


def test_every_maintenance_job_is_scheduled_and_every_scheduled_job_is_registered():
    scheduled = {entry["task"] for entry in BEAT_SCHEDULE.values()}
    assert scheduled == registered_maintenance_tasks()
    assert scheduled >= {contract.MAINTENANCE_EXPIRE_STREAKS, contract.MAINTENANCE_RECONCILE,
                         contract.MAINTENANCE_STREAK_RISK, contract.MAINTENANCE_RELAY_OUTBOX}


def test_every_scheduled_job_is_routed_to_the_maintenance_queue_undeclared_and_expires_within_its_interval():
    for name, entry in BEAT_SCHEDULE.items():
        route = app.amqp.router.route(dict(entry["options"]), entry["task"])
        assert (route["queue"].name, route["routing_key"]) == (contract.QUEUE_MAINTENANCE,) * 2, name
        assert route["queue"].no_declare, name
        assert 0 < entry["options"]["expires"] <= entry["schedule"], name


def test_the_designs_intervals_are_the_defaults():
    every_s = {entry["task"]: entry["schedule"] for entry in BEAT_SCHEDULE.values()}
    assert every_s == {
        contract.MAINTENANCE_EXPIRE_STREAKS: 3_600.0,
        contract.MAINTENANCE_STREAK_RISK: 3_600.0,
        contract.MAINTENANCE_RECONCILE: 86_400.0,
        contract.MAINTENANCE_RELAY_OUTBOX: 5.0,
        contract.MAINTENANCE_SWEEP_STALE_TASKS: 3_600.0,
        contract.MAINTENANCE_UPDATE_LEADERBOARDS: 5.0,
        contract.MAINTENANCE_RETENTION: 86_400.0,
    }


def test_celery_beat_reads_this_table():
    assert celeryconfig.beat_schedule == BEAT_SCHEDULE
    assert app.conf.beat_schedule == BEAT_SCHEDULE

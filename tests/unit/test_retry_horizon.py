"""The retry horizon: capped exponential backoff whose shortest waits still add up to the horizon."""

import random

import pytest

from rewards import settings
from workers.base import backoff_ceiling_s, backoff_s, retries_within


def test_the_ceiling_doubles_from_half_a_second_and_stops_at_the_cap():
    assert [backoff_ceiling_s(n, cap_s=30) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_the_default_hour_takes_245_retries_and_reaches_the_cap():
    retries = retries_within(3600, cap_s=30)
    assert retries == 245
    assert backoff_ceiling_s(retries - 1, cap_s=30) == 30


@pytest.mark.parametrize(("horizon_s", "cap_s"), [(3600, 30), (120, 5), (1, 1), (86_400, 600)])
def test_the_shortest_waits_of_the_allowed_retries_cover_the_horizon(horizon_s, cap_s):
    retries = retries_within(horizon_s, cap_s)
    shortest_total_s = sum(backoff_ceiling_s(n, cap_s) / 2 for n in range(retries))
    one_fewer_s = shortest_total_s - backoff_ceiling_s(retries - 1, cap_s) / 2
    assert shortest_total_s >= horizon_s > one_fewer_s


def test_every_wait_lies_between_half_the_ceiling_and_the_ceiling():
    random.seed(3)
    for retries in range(40):
        ceiling_s = backoff_ceiling_s(retries, cap_s=30)
        assert ceiling_s / 2 <= backoff_s(retries, cap_s=30) <= ceiling_s


def test_a_zero_horizon_retries_nothing():
    assert retries_within(0, cap_s=30) == 0


def test_the_default_visibility_timeout_is_minutes_derived_from_the_limits(monkeypatch):
    for name in ("CELERY_VISIBILITY_TIMEOUT_S", "REWARDS_TASK_TIME_LIMIT_S", "REWARDS_RETRY_BACKOFF_S_MAX"):
        monkeypatch.delenv(name, raising=False)
    loaded = settings.load()
    assert loaded.visibility_timeout_s == 2 * (60 + 30) == 180
    assert settings.broker_transport_options(loaded)["visibility_timeout"] == 180


def test_a_connect_timeout_as_long_as_the_time_limit_is_refused(monkeypatch):
    monkeypatch.setenv("REWARDS_CONNECT_TIMEOUT_S", "60")
    with pytest.raises(settings.ConfigError, match="REWARDS_CONNECT_TIMEOUT_S"):
        settings.load()


def test_rabbitmq_sends_wait_for_publisher_confirms():
    loaded = settings.load()
    assert settings.broker_transport_options(loaded, "amqp://guest@127.0.0.1//") == {"confirm_publish": True}

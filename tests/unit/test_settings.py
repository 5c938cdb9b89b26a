"""Configuration: a bad value stops start-up with the variable's name."""

import pytest

from rewards import settings


def test_defaults_are_the_reference_amounts(monkeypatch):
    for name in ("CHECKIN_XP", "STREAK_BONUS_XP", "STREAK_BONUS_PERIOD_DAYS", "PRO_XP_MULTIPLIER"):
        monkeypatch.delenv(name, raising=False)
    policy = settings.load().policy
    assert (policy.checkin_xp, policy.streak_bonus_xp, policy.streak_bonus_period_days,
            policy.pro_xp_multiplier) == (10, 150, 7, 5)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("CHECKIN_XP", "ten", "CHECKIN_XP must be a whole number"),
        ("PRO_XP_MULTIPLIER", "0", "PRO_XP_MULTIPLIER must be at least 1"),
        ("REWARDS_DATABASE_URL", "  ", "REWARDS_DATABASE_URL is set but empty"),
        ("CELERY_VISIBILITY_TIMEOUT_S", "10", "CELERY_VISIBILITY_TIMEOUT_S (10) must exceed"),
        ("REWARDS_FLOWER_UNSAFE_NO_AUTH", "maybe", "REWARDS_FLOWER_UNSAFE_NO_AUTH must be 1 or 0"),
    ],
)
def test_a_bad_value_names_its_variable(monkeypatch, name, value, fragment):
    monkeypatch.setenv(name, value)
    with pytest.raises(settings.ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        settings.load()


def test_a_client_url_that_the_environment_would_override_is_refused(monkeypatch):
    from rewards.client import RewardsClient

    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
    with pytest.raises(ValueError, match="CELERY_BROKER_URL='redis://127.0.0.1:6379/14' in the environment"):
        RewardsClient("redis://elsewhere:6379/0")


def test_every_queue_has_an_exchange_and_key_of_its_own():
    from rewards.contract import QUEUES, kombu_queues

    assert [(q.name, q.exchange.name, q.routing_key) for q in kombu_queues()] == [(n, n, n) for n in QUEUES]

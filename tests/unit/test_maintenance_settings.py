"""Maintenance configuration: intervals, limits and the event sink fail at start-up, by name."""

import pytest

from rewards import settings


def test_the_defaults_are_the_designs_schedule(monkeypatch):
    for name in ("REWARDS_EXPIRE_STREAKS_EVERY_S", "REWARDS_RECONCILE_EVERY_S", "STREAK_RISK_HOUR",
                 "REWARDS_EVENTS_SINK", "REWARDS_RELAY_OUTBOX_EVERY_S"):
        monkeypatch.delenv(name, raising=False)
    maintenance = settings.load().maintenance
    assert (maintenance.expire_streaks_every_s, maintenance.reconcile_every_s,
            maintenance.relay_outbox_every_s, maintenance.streak_risk_hour,
            maintenance.events_sink) == (3_600, 86_400, 5, 20, "queue")


@pytest.mark.parametrize(
    ("variables", "fragment"),
    [
        ({"STREAK_RISK_HOUR": "24"}, "STREAK_RISK_HOUR must be at most 23"),
        ({"REWARDS_RECONCILE_EVERY_S": "0"}, "REWARDS_RECONCILE_EVERY_S must be at least 1"),
        ({"REWARDS_OUTBOX_RETENTION_DAYS": "1"}, "REWARDS_OUTBOX_RETENTION_DAYS must be at least 2"),
        ({"REWARDS_EVENTS_SINK": "kafka"}, "REWARDS_EVENTS_SINK must be one of queue, webhook"),
        ({"REWARDS_EVENTS_SINK": "webhook"}, "REWARDS_WEBHOOK_URL must be an http(s) URL"),
        ({"REWARDS_EVENTS_SINK": "webhook", "REWARDS_WEBHOOK_URL": "https://example.test/hook",
          "REWARDS_WEBHOOK_SECRET": "short"}, "REWARDS_WEBHOOK_SECRET must be set"),
        ({"REWARDS_RELAY_BUDGET_S": "58"}, "REWARDS_RELAY_BUDGET_S + REWARDS_WEBHOOK_TIMEOUT_S"),
        ({"REWARDS_RECONCILE_LAG_S": "10"}, "REWARDS_RECONCILE_LAG_S (10) must be at least"),
    ],
)
def test_a_bad_maintenance_value_names_its_variable(monkeypatch, variables, fragment):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(settings.ConfigError) as raised:
        settings.load()
    assert fragment in str(raised.value)


def test_a_webhook_sink_with_url_and_secret_loads(monkeypatch):
    monkeypatch.setenv("REWARDS_EVENTS_SINK", "webhook")
    monkeypatch.setenv("REWARDS_WEBHOOK_URL", "https://example.test/hook")
    monkeypatch.setenv("REWARDS_WEBHOOK_SECRET", "0123456789abcdef")
    assert settings.load().maintenance.webhook_url == "https://example.test/hook"

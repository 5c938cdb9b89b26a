"""Configuration: a bad value stops start-up with the variable's name."""

import json
import os
import subprocess
import sys

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


@pytest.mark.parametrize(("address", "auth", "fragment"), [
    ("0.0.0.0", None, "REWARDS_METRICS_ADDRESS=0.0.0.0 serves metrics beyond this machine"),
    ("10.0.0.5", "prometheus", "REWARDS_METRICS_BASIC_AUTH must be user:password"),
    ("127.0.0.1", ":secret", "REWARDS_METRICS_BASIC_AUTH must be user:password"),
])
def test_metrics_served_beyond_loopback_need_basic_auth(monkeypatch, address, auth, fragment):
    monkeypatch.setenv("REWARDS_METRICS_PORT", "9808")
    monkeypatch.setenv("REWARDS_METRICS_ADDRESS", address)
    if auth is not None:
        monkeypatch.setenv("REWARDS_METRICS_BASIC_AUTH", auth)
    with pytest.raises(settings.ConfigError, match=fragment):
        settings.load()


def test_settings_compose_passes_empty_when_env_leaves_them_out_take_their_defaults(monkeypatch):
    for name in ("REWARDS_REDIS_SENTINEL_MASTER", "REWARDS_METRICS_ADDRESS", "REWARDS_METRICS_PORT",
                 "REWARDS_EVENTS_SINK", "REWARDS_CLIENT_LINGER_MS"):
        monkeypatch.setenv(name, "")
    loaded = settings.load()
    assert (loaded.redis_sentinel_master, loaded.metrics_address, loaded.metrics_port,
            loaded.maintenance.events_sink, loaded.client_linger_ms) == ("rewards", "127.0.0.1", None, "queue", None)


def test_metrics_on_loopback_or_behind_basic_auth_are_allowed(monkeypatch):
    monkeypatch.setenv("REWARDS_METRICS_PORT", "9808")
    assert settings.load().metrics_address == "127.0.0.1"
    monkeypatch.setenv("REWARDS_METRICS_ADDRESS", "0.0.0.0")
    monkeypatch.setenv("REWARDS_METRICS_BASIC_AUTH", "prometheus:secret")
    assert settings.load().metrics_basic_auth == "prometheus:secret"


def test_a_client_url_that_the_environment_would_override_is_refused(monkeypatch):
    from rewards.client import RewardsClient

    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
    with pytest.raises(ValueError, match="CELERY_BROKER_URL='redis://127.0.0.1:6379/14' in the environment"):
        RewardsClient("redis://elsewhere:6379/0")


def test_every_queue_has_an_exchange_and_key_of_its_own():
    from rewards.contract import QUEUES, kombu_queues

    assert [(q.name, q.exchange.name, q.routing_key) for q in kombu_queues()] == [(n, n, n) for n in QUEUES]


# --- Secrets from files (NAME_FILE, the Docker-secrets convention) ---

@pytest.fixture
def secret_file(tmp_path):
    def write(text: str, name: str = "secret"):
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


def test_a_variable_given_as_a_file_is_read_from_it_without_its_trailing_newline(monkeypatch, secret_file):
    url = "postgresql+psycopg://rewards:s3cret@db:5432/rewards"
    monkeypatch.delenv("REWARDS_DATABASE_URL", raising=False)
    monkeypatch.setenv("REWARDS_DATABASE_URL_FILE", str(secret_file(url + "\n")))
    assert settings.load().database_url == url


def test_every_variable_the_settings_read_may_come_from_a_file(secret_file):
    loaded = settings.load({"CHECKIN_XP_FILE": str(secret_file("25\n")),
                            "CELERY_RESULT_BACKEND_FILE": str(secret_file("redis://r:6379/7", "backend"))})
    assert loaded.policy.checkin_xp == 25 and loaded.result_backend == "redis://r:6379/7"


def test_an_empty_file_variable_counts_as_unset_as_compose_passes_every_variable():
    assert settings.load({"CHECKIN_XP_FILE": "", "CHECKIN_XP": "12"}).policy.checkin_xp == 12


def test_a_variable_set_both_ways_is_refused_naming_both(secret_file):
    env = {"CELERY_BROKER_URL": "redis://a:6379/0", "CELERY_BROKER_URL_FILE": str(secret_file("redis://b:6379/0"))}
    with pytest.raises(settings.ConfigError, match="both CELERY_BROKER_URL and CELERY_BROKER_URL_FILE are set"):
        settings.load(env)


def test_a_missing_file_names_the_variable_the_path_and_what_to_do(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(settings.ConfigError) as error:
        settings.load({"REWARDS_DATABASE_URL_FILE": str(missing)})
    message = str(error.value)
    assert f"REWARDS_DATABASE_URL_FILE='{missing}' cannot be read (No such file or directory)" in message
    assert "or set REWARDS_DATABASE_URL itself" in message


@pytest.mark.parametrize("contents", ["", "\n", "  \n"])
def test_an_empty_file_names_the_variable_and_the_path(secret_file, contents):
    path = secret_file(contents)
    with pytest.raises(settings.ConfigError, match=f"REWARDS_WEBHOOK_SECRET_FILE='{path}' is an empty file"):
        settings.load({"REWARDS_WEBHOOK_SECRET_FILE": str(path)})


def test_files_of_variables_the_engine_never_reads_are_left_alone(tmp_path):
    # SSL_CERT_FILE belongs to OpenSSL; nothing named SSL_CERT is read, so its path is never opened.
    assert settings.load({"SSL_CERT_FILE": str(tmp_path / "absent.pem")}).policy.checkin_xp == 10


def test_variables_celery_and_flower_read_themselves_are_put_into_the_environment(secret_file):
    environ = {"CELERY_BROKER_URL_FILE": str(secret_file("rediss://:pw@redis:6380/0\n")),
               "FLOWER_BASIC_AUTH_FILE": str(secret_file("ops:s3cret\n", "flower")),
               "FLOWER_OAUTH2_SECRET_FILE": ""}
    settings.export_secret_files(settings.CELERY_ENVIRONMENT_VARIABLES + settings.FLOWER_ENVIRONMENT_VARIABLES,
                                 environ)
    assert environ == {"CELERY_BROKER_URL": "rediss://:pw@redis:6380/0", "FLOWER_BASIC_AUTH": "ops:s3cret"}


def test_putting_a_variable_set_both_ways_into_the_environment_is_refused(secret_file):
    environ = {"FLOWER_BASIC_AUTH": "a:b", "FLOWER_BASIC_AUTH_FILE": str(secret_file("c:d"))}
    with pytest.raises(settings.ConfigError, match="both FLOWER_BASIC_AUTH and FLOWER_BASIC_AUTH_FILE"):
        settings.export_secret_files(settings.FLOWER_ENVIRONMENT_VARIABLES, environ)


def test_a_worker_given_its_urls_as_files_configures_celery_with_them(secret_file):
    broker, backend = "redis://127.0.0.1:6399/3", "redis://127.0.0.1:6399/4"
    env = {name: value for name, value in os.environ.items() if not name.startswith(("CELERY_", "REWARDS_"))}
    env |= {"CELERY_BROKER_URL_FILE": str(secret_file(broker + "\n")),
            "CELERY_RESULT_BACKEND_FILE": str(secret_file(backend + "\n", "backend"))}
    script = ("import json, os, workers\n"
              "print(json.dumps([workers.app.conf.broker_url, workers.app.conf.result_backend,\n"
              "                  sorted(name for name in os.environ if name.startswith('CELERY_'))]))\n")
    shown = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == [broker, backend, ["CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"]]


def test_a_client_reads_its_urls_from_files(monkeypatch, secret_file):
    from rewards.client import RewardsClient

    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    loaded = settings.load({"CELERY_BROKER_URL_FILE": str(secret_file("redis://127.0.0.1:6399/3")),
                            "CELERY_RESULT_BACKEND_FILE": str(secret_file("redis://127.0.0.1:6399/4", "b"))})
    client = RewardsClient(settings=loaded)
    assert (client.app.conf.broker_url, client.app.conf.result_backend) == (
        "redis://127.0.0.1:6399/3", "redis://127.0.0.1:6399/4")

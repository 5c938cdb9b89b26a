"""docker-compose.yml and .env.example agree with the project they deploy.

No Docker engine runs on the development machines, so the compose file is
checked here by reading it: every command it runs exists in this project,
every queue of the contract has a consumer, the deployment's safety settings
are in place, and every variable it needs is documented in .env.example.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml
from celery.bin.celery import celery as celery_command
from flower.options import default_options as flower_options

from rewards import contract
from rewards import settings as settings_module
from rewards.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
ENV_EXAMPLE_TEXT = (ROOT / ".env.example").read_text()

# Compose substitutes ${NAME}, ${NAME:-default}, ${NAME:?message} and $NAME;
# $$ is an escaped dollar left for the container's shell.
_COMPOSE_VARIABLE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")
_EXAMPLE_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
# Flower's opt-out is for a developer's machine; the compose stack never passes it on.
# Flower without auth is never for compose; the filesystem broker is the
# embedded default of `rewards demo`, not the production shape.
# REWARDS_METRICS_BASIC_AUTH reaches the processes that serve metrics as a file (_FILE).
_NOT_FOR_COMPOSE = {"REWARDS_FLOWER_UNSAFE_NO_AUTH", "REWARDS_BROKER_FOLDER", "REWARDS_METRICS_BASIC_AUTH"}


def _strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [text for value in node.values() for text in _strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in _strings(value)]
    return []


def compose_variables() -> set[str]:
    """The variables compose substitutes: in values, never in YAML comments."""
    return {braced or bare for text in _strings(COMPOSE)
            for braced, bare in _COMPOSE_VARIABLE.findall(text)}


def example_assignments(*, include_commented: bool) -> dict[str, str]:
    found = {}
    for line in ENV_EXAMPLE_TEXT.splitlines():
        match = _EXAMPLE_LINE.match(line.strip())
        if match and (include_commented or not match.group(1)):
            found[match.group(2)] = match.group(3)
    return found


def settings_variables() -> set[str]:
    """Every environment variable rewards/settings.py reads, found in its source."""
    tree = ast.parse(Path(settings_module.__file__).read_text())
    readers = {"_text", "_int", "_flag", "get", "getenv"}
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        # The name is the first string argument: _int(env, "NAME", …), env.get("NAME").
        name = next((arg.value for arg in node.args[:2]
                     if isinstance(arg, ast.Constant) and isinstance(arg.value, str)), "")
        if called in readers and name.isupper():
            names.add(name)
    return names


def command_of(name: str) -> list[str]:
    command = SERVICES[name]["command"]
    assert isinstance(command, list), f"{name}: write the command as a list, so no shell re-splits it"
    return command


def engine_services() -> list[str]:
    return [name for name, service in SERVICES.items() if "build" in service]


def celery_services(target: str) -> list[str]:
    return [name for name in engine_services()
            if command_of(name)[:3] == ["celery", "-A", "workers"] and command_of(name)[3] == target]


def option_value(command: list[str], *flags: str) -> str:
    for index, word in enumerate(command):
        if word in flags:
            return command[index + 1]
        for flag in flags:
            if word.startswith(flag + "="):
                return word.split("=", 1)[1]
    raise AssertionError(f"{command} has none of {flags}")


def test_the_settings_reader_finds_the_variables_it_is_meant_to_find():
    # Guards the source scan below: if it found nothing, every check built on it would pass.
    assert {"REWARDS_DATABASE_URL", "CELERY_BROKER_URL", "CHECKIN_XP",
            "REWARDS_FLOWER_UNSAFE_NO_AUTH"} <= settings_variables()


@pytest.mark.parametrize("service", engine_services())
def test_every_engine_service_runs_a_command_this_project_has(service):
    command = command_of(service)
    if command[:2] == ["sh", "-c"]:
        # A shell line of `rewards …` steps (and file plumbing): each step must exist.
        for step in (shlex.split(text.partition(">")[0]) for text in command[2].split("&&")):
            assert step[0] in {"rewards", "chmod"}, f"{service} runs {step}"
            if step[0] == "rewards":
                build_parser().parse_args(step[1:])
        return
    if command[0] == "rewards":
        build_parser().parse_args(command[1:])  # exits (fails the test) on an unknown sub-command
        return
    assert command[:3] == ["celery", "-A", "workers"], f"{service}: {command}"
    target = command[3]
    assert target in {"worker", "beat", "flower"}, f"{service} runs celery {target}"
    assert target in celery_command.commands, f"celery has no {target!r} command here"
    given = [word.partition("=")[0] for word in command[4:] if word.startswith("-")]
    if target == "flower":
        # Flower silently ignores an option it does not know: a typo would pass unnoticed.
        unknown = [name for name in given if not hasattr(flower_options, name.lstrip("-").replace("-", "_"))]
    else:
        known = {opt for param in celery_command.commands[target].params for opt in param.opts}
        unknown = [name for name in given if name not in known]
    assert not unknown, f"{service}: celery {target} has no option {unknown}"
    if target == "worker":
        queues = option_value(command, "-Q", "--queues").split(",")
        assert set(queues) <= set(contract.QUEUES), f"{service} consumes unknown queues {queues}"


def test_every_queue_of_the_contract_has_a_consumer_and_maintenance_has_its_own():
    consumed = {}
    for service in celery_services("worker"):
        for queue in option_value(command_of(service), "-Q", "--queues").split(","):
            consumed.setdefault(queue, []).append(service)
    assert set(consumed) == set(contract.QUEUES)
    assert consumed[contract.QUEUE_MAINTENANCE] == ["maintenance"]
    assert "maintenance" not in consumed[contract.QUEUE_CHECKINS] + consumed[contract.QUEUE_CLAIMS]


def test_there_is_exactly_one_beat_and_it_is_never_replicated():
    beats = celery_services("beat")
    assert beats == ["beat"]
    assert SERVICES["beat"].get("deploy", {}).get("replicas", 1) == 1
    assert "scale" not in SERVICES["beat"]


def test_engine_processes_start_after_a_successful_migration_on_healthy_servers():
    assert command_of("migrate") == ["rewards", "db", "upgrade"]
    for service in celery_services("worker") + celery_services("beat"):
        depends_on = SERVICES[service]["depends_on"]
        assert depends_on["migrate"] == {"condition": "service_completed_successfully"}, service
        assert depends_on["postgres"] == {"condition": "service_healthy"}, service
        assert depends_on["rabbitmq"] == {"condition": "service_healthy"}, service
        assert depends_on["redis"] == {"condition": "service_healthy"}, service


def test_postgres_keeps_its_data_and_reports_readiness():
    postgres = SERVICES["postgres"]
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_redis_persists_never_evicts_and_admits_only_the_role_users_broker_users_writes():
    redis_service = SERVICES["redis"]
    command = redis_service["command"]
    assert option_value(command, "--appendonly") == "yes"
    assert option_value(command, "--maxmemory-policy") == "noeviction"
    assert option_value(command, "--aclfile") == "/broker-users/users.acl"
    assert "--requirepass" not in command, "the ACL file switches the default user off"
    assert any(volume.endswith(":/data") for volume in redis_service["volumes"])
    assert "redis-cli --no-auth-warning --user rewards_worker" in " ".join(redis_service["healthcheck"]["test"])


def test_rabbitmq_is_the_broker_booted_from_the_definitions_broker_users_writes():
    rabbitmq = SERVICES["rabbitmq"]
    assert rabbitmq["hostname"] == "rabbitmq"
    assert any(volume.endswith(":/var/lib/rabbitmq") for volume in rabbitmq["volumes"])
    [config] = rabbitmq["configs"]
    assert COMPOSE["configs"][config["source"]]["content"].strip() == \
        "load_definitions = /broker-users/definitions.json"
    written = " ".join(command_of("broker-users"))
    assert "rewards access rabbitmq --vhost rewards > /broker-users/definitions.json" in written
    assert "rewards access redis-acl" in written
    for server in ("rabbitmq", "redis"):
        assert SERVICES[server]["depends_on"]["broker-users"] == {"condition": "service_completed_successfully"}


@pytest.mark.parametrize("service", ["worker", "maintenance", "beat", "flower"])
def test_every_engine_process_connects_to_rabbitmq_as_its_role(service):
    broker_url = SERVICES[service]["environment"]["CELERY_BROKER_URL"]
    role = "beat" if service == "beat" else "worker"
    assert broker_url.startswith(f"amqp://rewards_{role}:${{REWARDS_RABBITMQ_{role.upper()}_PASSWORD:?")
    assert broker_url.endswith("@rabbitmq:5672/rewards")


def test_broker_users_provisions_every_role_of_both_brokers():
    from rewards.access import rabbitmq, redis

    environment = SERVICES["broker-users"]["environment"]
    for broker, roles in (("RABBITMQ", rabbitmq.ROLES), ("REDIS", redis.ROLES)):
        for role in roles:
            assert f"REWARDS_{broker}_{role.upper()}_PASSWORD" in environment, (broker, role)


def test_flower_requires_basic_auth_and_is_published_on_loopback_only():
    flower = SERVICES["flower"]
    assert celery_services("flower") == ["flower"]
    # The password arrives as a secret file (workers/flower_guard.py reads it), never in the environment.
    assert "FLOWER_BASIC_AUTH" not in flower["environment"]
    assert flower["environment"]["FLOWER_BASIC_AUTH_FILE"] == "/run/secrets/flower_basic_auth"
    assert flower["secrets"] == ["flower_basic_auth"]
    assert option_value(command_of("flower"), "--enable_events") == "true"
    # /metrics and /healthcheck answer without authentication in Flower 2.2.
    assert flower["ports"] and all(port.startswith("127.0.0.1:") for port in flower["ports"])
    published = {name: service["ports"] for name, service in SERVICES.items() if service.get("ports")}
    assert set(published) == {"flower", "prometheus"}, "only Flower and Prometheus are published"
    assert all(port.startswith("127.0.0.1:") for ports in published.values() for port in ports)


def test_prometheus_scrapes_every_worker_and_beat_with_basic_auth_and_loads_the_alert_rules():
    config = yaml.safe_load((ROOT / "rewards/metrics/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"rewards-worker", "rewards-beat"}, "the rules select by these names"
    scraped = {name for job in jobs.values() for sd in job.get("dns_sd_configs", []) for name in sd["names"]}
    scraped |= {target.split(":")[0] for job in jobs.values() for static in job.get("static_configs", [])
                for target in static["targets"]}
    assert scraped == set(celery_services("worker")) | set(celery_services("beat"))
    for job in jobs.values():
        assert job["basic_auth"]["password_file"] == "/run/secrets/metrics_password"
    prometheus = SERVICES["prometheus"]
    mounted = {config_["source"]: config_["target"] for config_ in prometheus["configs"]}
    assert COMPOSE["configs"]["rewards-alerts"]["file"] == "./rewards/metrics/alerts.yml"
    assert mounted["rewards-alerts"] in config["rule_files"]
    for name in scraped:
        environment = SERVICES[name]["environment"]
        assert environment["REWARDS_METRICS_PORT"] == "9808" and environment["REWARDS_METRICS_ADDRESS"] == "0.0.0.0"
        # Listening beyond loopback: the settings refuse to start without the basic auth file.
        assert environment["REWARDS_METRICS_BASIC_AUTH_FILE"] == SERVICES[name]["configs"][0]["target"]
        assert not SERVICES[name].get("ports"), f"{name}'s metrics stay on the compose network"


def test_every_variable_the_compose_file_uses_is_set_in_the_env_example():
    missing = compose_variables() - set(example_assignments(include_commented=False))
    assert compose_variables() and not missing, f"add to .env.example: {sorted(missing)}"


def test_passwords_reach_their_servers_as_secret_files_made_from_the_env_example():
    secrets = COMPOSE["secrets"]
    sources = {name: secret["environment"] for name, secret in secrets.items()}
    missing = set(sources.values()) - set(example_assignments(include_commented=False))
    assert not missing, f"add to .env.example: {sorted(missing)}"
    postgres = SERVICES["postgres"]
    assert "POSTGRES_PASSWORD" not in postgres["environment"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    granted = {name for service in SERVICES.values() for name in service.get("secrets", [])}
    assert granted == set(secrets), "every secret is used, and only declared ones are"


def test_every_variable_the_settings_read_is_documented_in_the_env_example():
    documented = example_assignments(include_commented=True)
    missing = settings_variables() - set(documented)
    assert not missing, f"add to .env.example: {sorted(missing)}"
    for line_number, line in enumerate(ENV_EXAMPLE_TEXT.splitlines()):
        match = _EXAMPLE_LINE.match(line.strip())
        if match:
            previous = ENV_EXAMPLE_TEXT.splitlines()[line_number - 1].strip()
            assert previous.startswith("#") and not _EXAMPLE_LINE.match(previous), \
                f"{match.group(2)} needs a one-line comment above it"


def test_every_engine_setting_reaches_the_engine_containers():
    for service in engine_services():
        environment = SERVICES[service]["environment"]
        missing = settings_variables() - _NOT_FOR_COMPOSE - set(environment)
        assert not missing, f"{service} does not receive {sorted(missing)}"
        assert "REWARDS_FLOWER_UNSAFE_NO_AUTH" not in environment, f"{service} must never run Flower without auth"


def test_the_example_settings_are_ones_the_engine_starts_with(monkeypatch):
    for name, value in example_assignments(include_commented=False).items():
        monkeypatch.setenv(name, value)
    loaded = settings_module.load()
    assert loaded.policy.checkin_xp == 10 and loaded.flower_unsafe_no_auth is False


def test_the_env_file_with_its_passwords_stays_out_of_git_and_out_of_the_image():
    for ignore_file in (".gitignore", ".dockerignore"):
        lines = {line.strip() for line in (ROOT / ignore_file).read_text().splitlines()}
        assert ".env" in lines, f"{ignore_file} must list .env"


def test_workers_send_the_events_flower_builds_its_task_list_from_and_producers_need_no_event_exchange():
    import celeryconfig

    assert celeryconfig.worker_send_task_events is True
    assert celeryconfig.task_send_sent_event is False

"""The Redis ACL rules of each role, as data: derived from the contract, narrow, and never dangerous."""

from fnmatch import fnmatchcase

import pytest

from rewards import contract
from rewards.access import redis as redis_access

PRODUCERS = contract.SENDING_ROLES
# What beat reads for its metrics (rewards.metrics.state): every queue's lists, the dead letters, the boards' checkpoint.
MONITORED_KEYS = {*(key for queue in contract.QUEUES for key in redis_access.priority_lists(queue)),
                  "rewards:dead_letters", "rewards:lb:checkpoint"}
USERS = {role: (f"rewards_test_{role}", f"{role}-secret") for role in redis_access.ROLES}
# Commands no role may be given, whatever else changes (all in Redis's @dangerous category).
DANGEROUS = {"flushall", "flushdb", "config", "keys", "debug", "monitor", "shutdown", "acl", "module",
             "replicaof", "save", "bgsave", "migrate", "restore", "sort", "client|kill", "client|list"}


def key_patterns(role: str, *, writable: bool) -> set[str]:
    """Every key pattern of the role that grants write (or read) access."""
    patterns = set()
    for grant in redis_access.grants(role, broker_db=12):
        patterns.update(grant.keys, grant.write_keys if writable else grant.read_keys)
    return patterns


def all_patterns(role: str) -> set[str]:
    return {pattern for grant in redis_access.grants(role, broker_db=12)
            for pattern in (*grant.keys, *grant.read_keys, *grant.write_keys, *grant.channels)}


def commands(role: str) -> set[str]:
    return {command for grant in redis_access.grants(role, broker_db=12) for command in grant.commands}


@pytest.mark.parametrize("role", PRODUCERS)
def test_a_producer_may_write_exactly_the_lists_of_its_queues(role):
    assert key_patterns(role, writable=True) == set(contract.QUEUES_BY_ROLE[role])


@pytest.mark.parametrize("role", PRODUCERS)
def test_a_producer_reads_only_results_and_pushes_only_with_lpush(role):
    monitored = MONITORED_KEYS if role == contract.ROLE_BEAT else set()
    assert key_patterns(role, writable=False) == {redis_access.RESULT_KEYS} | monitored
    queue_grants = [grant for grant in redis_access.grants(role) if grant.write_keys]
    assert [grant.commands for grant in queue_grants] == [("lpush",)]


def test_beat_reads_lengths_and_the_leaderboard_checkpoint_for_its_metrics_and_writes_none_of_them():
    monitor_grants = [grant for grant in redis_access.grants(contract.ROLE_BEAT)
                      if set(grant.read_keys) & MONITORED_KEYS]
    assert {command for grant in monitor_grants for command in grant.commands} == {"llen", "hlen", "hget"}
    assert [grant for grant in monitor_grants if grant.keys or grant.write_keys] == []


def test_no_pattern_of_upstream_matches_an_operator_or_maintenance_list():
    forbidden = [key for queue in (contract.QUEUE_OPERATOR, contract.QUEUE_MAINTENANCE)
                 for key in redis_access.priority_lists(queue)]
    assert [(pattern, key) for pattern in all_patterns("upstream") for key in forbidden
            if fnmatchcase(key, pattern)] == []


@pytest.mark.parametrize("role", PRODUCERS)
def test_only_the_worker_can_touch_unacknowledged_messages_and_binding_tables(role):
    kombu_keys = [*redis_access.UNACKED_KEYS, redis_access.BINDING_TABLE % contract.QUEUE_CLAIMS,
                  redis_access.BINDING_DEADLINES, "rewards:dead_letters"]
    writable = {pattern for grant in redis_access.grants(role) for pattern in (*grant.keys, *grant.write_keys)}
    assert [key for key in kombu_keys for pattern in writable if fnmatchcase(key, pattern)] == []
    assert [key for key in kombu_keys[:-1] for pattern in all_patterns(role) if fnmatchcase(key, pattern)] == []
    assert {key for key in kombu_keys
            if any(fnmatchcase(key, pattern) for pattern in key_patterns("worker", writable=True))} == set(kombu_keys)


@pytest.mark.parametrize("role", redis_access.ROLES)
def test_every_grant_of_every_role_lists_commands_and_ends_without_dangerous_ones(role):
    for grant in redis_access.grants(role, broker_db=12):
        rules = grant.rules()
        assert rules[-1] == "-@dangerous"
        assert not [rule for rule in rules if rule.startswith("+@")], rules
    assert commands(role) & DANGEROUS == set()


def test_producers_get_no_pattern_subscription_or_listing():
    for role in PRODUCERS:
        assert commands(role) & {"psubscribe", "scan", "keys", "rpop", "brpop", "del", "set"} == set()


def test_the_workers_pub_sub_channels_name_the_brokers_database():
    channels = {channel for grant in redis_access.grants("worker", broker_db=12) for channel in grant.channels}
    assert {"/12.celery.pidbox", "/12.celeryev/*"} <= channels
    assert not [channel for channel in channels if channel.startswith("/") and not channel.startswith("/12.")]


def test_priority_lists_are_kombus_names():
    assert redis_access.priority_lists("claims") == ("claims", "claims\x06\x163", "claims\x06\x166", "claims\x06\x169")


def test_the_acl_file_has_a_line_per_user_hashed_passwords_and_the_default_user_off():
    lines = redis_access.acl_file_lines(USERS, broker_db=12)

    assert [line.split()[1] for line in lines] == [*(name for name, _ in USERS.values()), "default"]
    assert lines[-1].startswith("user default off")
    assert not [line for line in lines for _, password in USERS.values() if password in line]
    assert "+client|setinfo" not in " ".join(redis_access.acl_file_lines(USERS, redis_version=(7, 0)))


@pytest.mark.parametrize(("users", "complaint"), [
    ({"admin": ("rewards_admin", "pw")}, "unknown role(s) admin"),
    ({"upstream": ("two words", "pw")}, "Redis user name 'two words'"),
    ({"upstream": ("default", "pw")}, "not 'default'"),
    ({"upstream": ("rewards_upstream", "")}, "password must not be empty"),
])
def test_bad_users_are_refused_naming_the_problem(users, complaint):
    with pytest.raises(ValueError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        redis_access.acl_file_lines(users)


def test_the_cli_takes_each_roles_user_and_password_from_the_environment_or_a_file(tmp_path):
    from rewards.cli.access import redis_users

    secret = tmp_path / "worker_password"
    secret.write_text("from-a-file\n")
    environ = {"REWARDS_REDIS_UPSTREAM_PASSWORD": "up", "REWARDS_REDIS_UPSTREAM_USER": "app_one",
               "REWARDS_REDIS_WORKER_PASSWORD_FILE": str(secret)}

    assert redis_users(environ) == {"upstream": ("app_one", "up"), "worker": ("rewards_worker", "from-a-file")}


def test_the_cli_without_any_password_names_the_variables_to_set():
    from rewards.cli.access import redis_users
    from rewards.settings import ConfigError

    with pytest.raises(ConfigError, match="REWARDS_REDIS_UPSTREAM_PASSWORD"):
        redis_users({})

#!/usr/bin/env bash
# Make sure PostgreSQL, Redis and RabbitMQ are installed and answering on
# 127.0.0.1, install etcd for the failover runs and Prometheus for the
# metrics tests, then create the
# test database and the test RabbitMQ vhost. Used by `make test` and CI; safe to re-run.
# On a fresh Debian machine (as root) it installs what is missing with apt-get.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=${PG_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
TEST_DB=${REWARDS_TEST_DB:-rewards_test}
TEST_VHOST=${REWARDS_TEST_VHOST:-$TEST_DB}
MIGRATIONS="$(dirname "$0")/../migrations/versions"
# Login roles the suite connects as (cluster-wide, shared by every test
# database); `make migrate` makes them members of the groups migration 0009 creates.
TEST_ROLES=(rewards_test_worker rewards_test_reader rewards_test_retention)

say() { printf '[services] %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    say "apt-get update"
    as_root apt-get update -qq
    apt_updated=1
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

wait_for() {  # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  say "$what did not come up within 30 s"; return 1
}

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }

ensure_postgres() {
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql postgresql-client
  if pg_ready; then say "PostgreSQL is up on $PG_HOST:$PG_PORT"; return; fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  say "starting PostgreSQL $version"
  # pg_ctlcluster starts the server as the postgres user (it refuses root).
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL pg_ready
}

pg_login() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$1" -d postgres -Atc 'select 1' >/dev/null 2>&1; }

ensure_trust_auth() {  # ensure_trust_auth ROLE...
  # The tests connect as these roles over TCP without a password, as on the
  # development machines; a fresh Debian install asks for one, so allow
  # local loopback connections for the roles that cannot log in yet.
  local role lines=""
  for role in "$@"; do
    pg_login "$role" || lines+="host all $role 127.0.0.1/32 trust\nhost all $role ::1/128 trust\n"
  done
  [ -n "$lines" ] || return 0
  local version hba
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  say "allowing trust auth for $* on 127.0.0.1 in $hba"
  as_root sed -i "1i ${lines%\\n}" "$hba"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  for role in "$@"; do wait_for "login as $role" pg_login "$role"; done
}

ensure_test_roles() {
  # Login roles only: the group roles they join exist once the migrations ran.
  local role
  for role in "${TEST_ROLES[@]}"; do
    psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -qc "
      DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN CREATE ROLE $role LOGIN; END IF;
      END \$\$"
  done
}

ensure_redis() {
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    say "Redis is up on 127.0.0.1:$REDIS_PORT"; return
  fi
  say "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
    --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping
}

rabbit_ready() { as_root rabbitmqctl -q status >/dev/null 2>&1; }

ensure_rabbitmq() {
  command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
  if rabbit_ready; then say "RabbitMQ is up"; return; fi
  say "starting RabbitMQ"
  as_root rabbitmq-server -detached
  for _ in $(seq 1 120); do rabbit_ready && return 0; sleep 0.5; done
  say "RabbitMQ did not come up within 60 s"; return 1
}

ensure_test_vhost() {
  # The system tests' RabbitMQ workers use a vhost of their own (the chaos
  # run creates and deletes one per run): nothing else consumes there. The
  # tests wait on queue counts, which RabbitMQ reports for a quorum queue
  # from metrics refreshed every quorum_tick_interval (5 s by default, so a
  # queue just filled reads 0 for seconds): the node is set to 100 ms, which
  # queues take when they start, and the vhost is made afresh each run so
  # that its queues do (and none is left classic by an older checkout).
  as_root rabbitmqctl -q eval 'application:set_env(rabbit, quorum_tick_interval, 100).' >/dev/null
  if as_root rabbitmqctl -q list_vhosts | grep -qx "$TEST_VHOST"; then
    as_root rabbitmqctl -q delete_vhost "$TEST_VHOST"
  fi
  say "creating RabbitMQ vhost $TEST_VHOST"
  as_root rabbitmqctl -q add_vhost "$TEST_VHOST"
  as_root rabbitmqctl -q set_permissions -p "$TEST_VHOST" guest '.*' '.*' '.*'
}

ensure_prometheus() {
  # The metrics test runs Debian's Prometheus against a worker and beat, and
  # promtool checks and unit-tests the alert rules. Nothing starts it here.
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || apt_install prometheus
}

ensure_etcd() {
  # The failover runs (chaos/ha.py) start etcd members of their own, beside
  # Patroni from the Makefile's venv.
  command -v etcd >/dev/null 2>&1 || apt_install etcd-server
}

pg_admin() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -Atq "$@"; }

# The revision a database stands at, when this checkout has no migration for it.
unknown_revision() {
  local revision
  revision=$(pg_admin -d "$TEST_DB" -c "select version_num from alembic_version" 2>/dev/null) || return 1
  [ -n "$revision" ] && ! grep -qx "revision = \"$revision\"" "$MIGRATIONS"/*.py || return 1
  echo "$revision"
}

ensure_test_database() {
  local exists revision
  exists=$(pg_admin -d postgres -c "select 1 from pg_database where datname = '$TEST_DB'")
  # A test database holds nothing worth keeping. One that another checkout
  # migrated past this one's head cannot be migrated from here: start afresh.
  if [ "$exists" = "1" ] && revision=$(unknown_revision); then
    say "database $TEST_DB stands at revision $revision, which this checkout does not have: recreating it"
    pg_admin -d postgres -c "drop database $TEST_DB with (force)"
    exists=""
  fi
  if [ "$exists" != "1" ]; then
    say "creating database $TEST_DB"
    psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -qc "create database $TEST_DB"
  fi
}

ensure_postgres
ensure_trust_auth postgres
ensure_test_roles
ensure_trust_auth "${TEST_ROLES[@]}"
ensure_redis
ensure_rabbitmq
ensure_etcd
ensure_prometheus
ensure_test_database
ensure_test_vhost

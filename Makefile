# Rewards engine — `make help` lists every target.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The test suite's servers. Override to run two suites side by side, e.g.
# `make test TEST_DB=rewards_test_2 TEST_REDIS_PORT=6380` (a Redis of its own,
# started by .ci/services.sh if none answers there), or other database numbers
# on the same Redis: `BROKER_DB=10 BACKEND_DB=11 SYSTEM_BROKER_DB=9 LEADERBOARD_DB=8`.
TEST_DB ?= rewards_test
TEST_REDIS_PORT ?= 6379
BROKER_DB ?= 14
BACKEND_DB ?= 15
LEADERBOARD_DB ?= 13
# System tests that kill workers use a broker database no other worker consumes...
SYSTEM_BROKER_DB ?= 12
# ... and, on RabbitMQ, a vhost of the suite's own (created by .ci/services.sh).
TEST_VHOST ?= $(TEST_DB)
# The suite connects with the least privilege production has (migration 0009's
# roles, through the login roles .ci/services.sh creates); the owner migrates,
# and test support code alone uses it to empty tables and set fixtures up.
TEST_PG := 127.0.0.1:5432/$(TEST_DB)
TEST_ADMIN_URL := postgresql+psycopg://postgres@$(TEST_PG)
TEST_ENV := REWARDS_DATABASE_URL=postgresql+psycopg://rewards_test_worker@$(TEST_PG) \
	REWARDS_READ_DATABASE_URL=postgresql+psycopg://rewards_test_reader@$(TEST_PG) \
	REWARDS_RETENTION_DATABASE_URL=postgresql+psycopg://rewards_test_retention@$(TEST_PG) \
	REWARDS_TEST_ADMIN_DATABASE_URL=$(TEST_ADMIN_URL) \
	CELERY_BROKER_URL=redis://127.0.0.1:$(TEST_REDIS_PORT)/$(BROKER_DB) \
	CELERY_RESULT_BACKEND=redis://127.0.0.1:$(TEST_REDIS_PORT)/$(BACKEND_DB) \
	REWARDS_SYSTEM_BROKER_URL=redis://127.0.0.1:$(TEST_REDIS_PORT)/$(SYSTEM_BROKER_DB) \
	REWARDS_REDIS_URL=redis://127.0.0.1:$(TEST_REDIS_PORT)/$(LEADERBOARD_DB) \
	REWARDS_SYSTEM_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/$(TEST_VHOST)

# Patroni from PyPI, not Debian's 3.0.2: with etcd3, 3.0.2 lets a primary that
# hung past the leader key's TTL write the key back when it resumes (fixed in
# 3.0.3, patroni/patroni#2689), and the standby promoted meanwhile is rewound,
# acknowledged commits and all (`make failover` lost hundreds that way). It
# runs as the postgres user, so its venv is made from Debian's python3, which
# that user can execute. etcd comes from Debian (.ci/services.sh).
PATRONI_VERSION := 4.1.5
PATRONI := $(VENV)/patroni/bin/patroni
.PHONY: help install demo services browser migrate test test-fast chaos failover up down flower bench bench-leaderboard soak-scale clean

# Where `make flower` listens (127.0.0.1 only; compose publishes Flower on the same port).
FLOWER_PORT ?= 5555

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

install: $(STAMP) ## Create .venv and install the project with its test extra

demo: $(STAMP) ## Simulate a month through a real worker (no servers needed) and print the figures
	$(BIN)/rewards demo

services: ## Install (apt-get) and start PostgreSQL, Redis and RabbitMQ if needed (and etcd, Prometheus); create the test database and vhost
	@REWARDS_TEST_DB=$(TEST_DB) REWARDS_TEST_VHOST=$(TEST_VHOST) REDIS_PORT=$(TEST_REDIS_PORT) bash .ci/services.sh

browser: ## Install (apt-get) headless Chromium, which the Flower dashboard test drives
	@bash .ci/chromium.sh

# The group roles exist once the migrations ran; a membership granted again is only a notice.
migrate: $(STAMP) services ## Migrate the test database as its owner (rewards db upgrade); put the test login roles in their groups
	$(TEST_ENV) REWARDS_DATABASE_URL=$(TEST_ADMIN_URL) $(BIN)/rewards db upgrade
	@PGOPTIONS='-c client_min_messages=warning' psql -h 127.0.0.1 -p 5432 -U postgres -d $(TEST_DB) -qc \
		'GRANT rewards_worker TO rewards_test_worker; GRANT rewards_reader TO rewards_test_reader; GRANT rewards_retention TO rewards_test_retention'

test: migrate browser $(PATRONI) ## Set everything up, then run the whole test suite (unit, integration, system)
	$(TEST_ENV) $(BIN)/pytest --durations=15

test-fast: migrate ## The suite without the slow system tests (worker kills)
	$(TEST_ENV) $(BIN)/pytest -m 'not system'

# The fault run: its own PostgreSQL and Redis in a temporary folder, on other
# ports, and a RabbitMQ vhost of its own; `make chaos SEED=7 BROKERS=redis`.
SEED ?= 1
BROKERS ?= redis amqp
chaos: $(STAMP) services ## Seeded fault run (kills, PostgreSQL down and frozen, Redis and RabbitMQ restarts) on Redis and RabbitMQ; prints the table
	@for broker in $(BROKERS); do $(BIN)/python -m chaos --broker $$broker --seed $(SEED) || exit 1; done

$(PATRONI): Makefile
	@test -x /usr/bin/python3 && /usr/bin/python3 -c 'import ensurepip' 2>/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null; }
	/usr/bin/python3 -m venv $(VENV)/patroni
	$(VENV)/patroni/bin/pip install -q 'patroni[etcd3,psycopg3]==$(PATRONI_VERSION)'
	@touch $@

# Servers of its own (chaos/ha.py): PostgreSQL under Patroni on three machines,
# Redis under Sentinel. The primary's machine lost, the Redis master lost, a
# worker killed, the next primary hung; then the first round once more with
# asynchronous replication, to show what that loses.
failover: $(STAMP) $(PATRONI) services ## Seeded failover run (PostgreSQL primary lost and hung, Redis master lost, a RabbitMQ node lost, a worker killed); prints the table
	$(BIN)/python -m chaos --broker amqp --profile failover --seed $(SEED)
	$(BIN)/python -m chaos --broker amqp --profile failover_async --seed $(SEED)

# The bench's own database and Redis numbers; override to run it beside
# another bench, e.g. `make bench BENCH_DB=rewards_bench_2 BENCH_REDIS_PORT=6380`.
BENCH_DB ?= rewards_bench
BENCH_REDIS_PORT ?= 6379
BENCH_BROKER_DB ?= 4
BENCH_BACKEND_DB ?= 5
BENCH_ENV := REWARDS_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/$(BENCH_DB) \
	CELERY_BROKER_URL=redis://127.0.0.1:$(BENCH_REDIS_PORT)/$(BENCH_BROKER_DB) \
	CELERY_RESULT_BACKEND=redis://127.0.0.1:$(BENCH_REDIS_PORT)/$(BENCH_BACKEND_DB)

bench: $(STAMP) ## Check-in throughput side by side: no-op, per job, batched, direct, pgbench (BENCH_JOBS, BENCH_SOAK)
	@REWARDS_TEST_DB=$(BENCH_DB) REDIS_PORT=$(BENCH_REDIS_PORT) bash .ci/services.sh
	@command -v pgbench >/dev/null || ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-contrib >/dev/null; }
	$(BENCH_ENV) $(BIN)/rewards db upgrade
	$(BENCH_ENV) $(BIN)/python -m benchmarks

# Its own database and Redis database: it truncates and flushes both.
BENCH_LB_DB ?= rewards_bench_lb
BENCH_LB_REDIS_DB ?= 6
BENCH_LB_ENV := REWARDS_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/$(BENCH_LB_DB) \
	REWARDS_REDIS_URL=redis://127.0.0.1:6379/$(BENCH_LB_REDIS_DB)

bench-leaderboard: $(STAMP) ## Top-100 and rank reads at 1,000,000 partners (BENCH_PARTNERS): Redis vs SQL
	@REWARDS_TEST_DB=$(BENCH_LB_DB) bash .ci/services.sh
	$(BENCH_LB_ENV) $(BIN)/rewards db upgrade
	$(BENCH_LB_ENV) $(BIN)/python -m benchmarks.leaderboard

# Its own database, login roles (rewards_scale_*) and Redis database: it empties
# and flushes them. SCALE_MIGRATE_FROM=<revision> loads at that revision and
# upgrades to head while check-ins are applied (the soak recreates the database
# for it); 0009 is the first the worker's role can write at, so every later
# migration runs under load. `make soak-scale SCALE_MIGRATE_FROM=` loads at head.
SCALE_DB ?= rewards_scale
SCALE_REDIS_DB ?= 7
SCALE_PARTNERS ?= 1000000
SCALE_MIGRATE_FROM ?= 0009
SCALE_PG := 127.0.0.1:5432/$(SCALE_DB)
SCALE_ADMIN_URL := postgresql+psycopg://postgres@$(SCALE_PG)
SCALE_ENV := SCALE_ADMIN_DATABASE_URL=$(SCALE_ADMIN_URL) \
	REWARDS_DATABASE_URL=postgresql+psycopg://rewards_scale_worker@$(SCALE_PG) \
	REWARDS_RETENTION_DATABASE_URL=postgresql+psycopg://rewards_scale_retention@$(SCALE_PG) \
	REWARDS_REDIS_URL=redis://127.0.0.1:6379/$(SCALE_REDIS_DB) \
	CELERY_BROKER_URL=redis://127.0.0.1:6379/$(SCALE_REDIS_DB) \
	CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/$(SCALE_REDIS_DB) \
	SCALE_PARTNERS=$(SCALE_PARTNERS) SCALE_MIGRATE_FROM=$(SCALE_MIGRATE_FROM)

soak-scale: $(STAMP) ## A simulated day at 1,000,000 partners (SCALE_PARTNERS): sizes, every maintenance job, migrations under load
	@REWARDS_TEST_DB=$(SCALE_DB) bash .ci/services.sh
	@if [ -z "$(SCALE_MIGRATE_FROM)" ]; then REWARDS_DATABASE_URL=$(SCALE_ADMIN_URL) $(BIN)/rewards db upgrade; fi
	$(SCALE_ENV) $(BIN)/python -m benchmarks.scale_soak

up: ## Run the production shape with docker compose (postgres, rabbitmq, redis, migrate, workers, beat, flower, prometheus)
	@test -f .env || { echo "make up: there is no .env here; create it from the example and set its passwords: cp .env.example .env" >&2; exit 2; }
	docker compose --env-file .env up --build

down: ## Stop the compose stack; its volumes, and so the data and queued jobs, are kept
	@test -f .env || { echo "make down: there is no .env here (cp .env.example .env)" >&2; exit 2; }
	docker compose --env-file .env down

flower: $(STAMP) ## Run Flower on 127.0.0.1:5555 (FLOWER_PORT) against the configured broker; set FLOWER_BASIC_AUTH=user:password
	$(BIN)/celery -A workers flower --address=127.0.0.1 --port=$(FLOWER_PORT)

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info

# Rewards engine — `make help` lists every target.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The test suite's servers. Override to run two suites side by side, e.g.
# `make test TEST_DB=rewards_test_2 BROKER_DB=12 BACKEND_DB=13`.
TEST_DB ?= rewards_test
BROKER_DB ?= 14
BACKEND_DB ?= 15
TEST_ENV := REWARDS_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/$(TEST_DB) \
	CELERY_BROKER_URL=redis://127.0.0.1:6379/$(BROKER_DB) \
	CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/$(BACKEND_DB)

.PHONY: help install demo services browser migrate test test-fast up down flower bench clean

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

services: ## Install (apt-get) and start PostgreSQL and Redis if needed; create the test database
	@REWARDS_TEST_DB=$(TEST_DB) bash .ci/services.sh

browser: ## Install (apt-get) headless Chromium, which the Flower dashboard test drives
	@bash .ci/chromium.sh

migrate: $(STAMP) services ## Run the Alembic migrations on the test database (rewards db upgrade)
	$(TEST_ENV) $(BIN)/rewards db upgrade

test: migrate browser ## Set everything up, then run the whole test suite (unit, integration, system)
	$(TEST_ENV) $(BIN)/pytest

test-fast: migrate ## The suite without the slow system tests (worker kills)
	$(TEST_ENV) $(BIN)/pytest -m 'not system'

BENCH_ENV := REWARDS_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/rewards_bench \
	CELERY_BROKER_URL=redis://127.0.0.1:6379/4 \
	CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/5

bench: $(STAMP) ## Measure check-in drain rate against Celery's no-op rate (own database and Redis numbers)
	@REWARDS_TEST_DB=rewards_bench bash .ci/services.sh
	$(BENCH_ENV) $(BIN)/rewards db upgrade
	$(BENCH_ENV) $(BIN)/python -m benchmarks.drain

up: ## Run the production shape with docker compose (postgres, redis, migrate, worker, maintenance, beat, flower)
	@test -f .env || { echo "make up: there is no .env here; create it from the example and set its passwords: cp .env.example .env" >&2; exit 2; }
	docker compose --env-file .env up --build

down: ## Stop the compose stack; its volumes, and so the data and queued jobs, are kept
	@test -f .env || { echo "make down: there is no .env here (cp .env.example .env)" >&2; exit 2; }
	docker compose --env-file .env down

flower: $(STAMP) ## Run Flower on 127.0.0.1:5555 (FLOWER_PORT) against the configured broker; set FLOWER_BASIC_AUTH=user:password
	$(BIN)/celery -A workers flower --address=127.0.0.1 --port=$(FLOWER_PORT)

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info

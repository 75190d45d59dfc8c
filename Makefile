# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/health-analytics
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv java localdb-build localdb stop demo test test-fast bench clean

help:
	@echo "make demo       set up, start the local server, seed demo data and show it"
	@echo "make test       set up and run the whole test suite (starts and stops its own server)"
	@echo "make test-fast  only the tests that need no database"
	@echo "make stop       stop the local server that 'make demo' left running"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

java:
	@bash scripts/ensure-java.sh

localdb-build: venv
	$(PY) -c "from health_analytics.localdb import LocalDb; from health_analytics.settings import load_settings; print('local server binary:', LocalDb(load_settings().localdb_dir).build())"

localdb: localdb-build
	$(CLI) localdb start

stop:
	$(CLI) localdb stop

demo: java localdb
	$(CLI) doctor --no-spark
	$(CLI) seed --users 100 --days 120 --invalid-share 0.02 --pattern
	$(CLI) inspect
	$(CLI) batch --full
	@echo "The SPEC worked-example user alone (its 18 000-step day, 2025-11-17, is flagged with z = 11.35):"
	$(CLI) batch --full --user 655eed000000000000000001
	$(CLI) verify --users 20
	@echo
	@echo "The local server keeps running; stop it with: make stop"

test: java localdb-build
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: java venv
	$(PY) -m pytest -m "not db" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .localdb .pytest_cache .hypothesis dlq spark-checkpoints

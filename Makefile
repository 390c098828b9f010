# The two set-up commands of the README: `make demo` and `make test`. Everything they need is
# installed here: a virtualenv keyed by the lock file (in the cache, outside the clone), Debian's
# MariaDB, and the JVM artifacts from Maven Central (~/.m2 and the cache). A warm run downloads nothing.
SHELL := /bin/bash
PYTHON ?= python3
CDC_CACHE ?= $(HOME)/.cache/cdc
LOCK_ID := $(shell cat requirements.lock | sha256sum | cut -c1-12)
VENV := $(CDC_CACHE)/venv-$(LOCK_ID)
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export CDC_CACHE

.PHONY: setup demo test lint unit e2e stack-down system

setup: system $(VENV)/.complete checkout
	@$(BIN)/cdc stack install

system:
	@command -v java >/dev/null || { echo "error: java not found: install a JDK 17+ (Debian: apt-get install openjdk-17-jdk-headless)"; exit 2; }
	@command -v mvn >/dev/null || { echo "error: mvn not found: install Maven (Debian: apt-get install maven)"; exit 2; }
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.11"; exit 2; }
	@if ! command -v mariadbd >/dev/null || ! command -v mariadb >/dev/null; then \
	  echo "installing Debian's MariaDB server and client"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null; \
	fi
	@# Debian's PostgreSQL server binaries: the catalog-outage tests (tests/e2e/postgres.py) run a private cluster
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "installing Debian's PostgreSQL server"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	fi

# the venv's path carries the lock file's hash, so a fresh clone (newer file times) reuses it
$(VENV)/.complete:
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	touch $@

# the checkout itself goes on the venv's path (no build step), and `cdc` runs from it
checkout: $(VENV)/.complete
	@echo "$(CURDIR)" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/cdc_checkout.pth"
	@printf '#!%s\nfrom cdc.cli import main\nmain()\n' "$(BIN)/python" > $(BIN)/cdc && chmod +x $(BIN)/cdc
	@ln -sfn $(VENV) .venv

demo: setup
	$(BIN)/cdc stack up
	$(BIN)/cdc demo

lint: setup
	$(BIN)/ruff check cdc spark_jobs tests airflow_dags benchmarks
	$(BIN)/mypy

unit: setup
	$(BIN)/python -m pytest tests/unit

test: lint
	$(BIN)/python -m pytest

stack-down:
	$(BIN)/cdc stack down

# The benchmarks (benchmarks/README.md): B3 commit cost, B5 merge vs rebuild, B5b cadence, B6 bucket join, B7 small
# files, on a private lake in a temp folder (no stack needed). Quick sizes by default (~1 h on a busy 2-core VM);
# `make bench BENCH_ARGS=--medium` (2M-row bases) or `BENCH_ARGS=--full` (the design's sizes: many hours);
# `BENCH_ARGS="--only b5,b6 --reps 7"`. Results: benchmarks/results/<bench>-<profile>.json.
.PHONY: bench
BENCH_ARGS ?= --quick
bench: setup
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

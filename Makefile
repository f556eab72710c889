# trail: `make demo` sets up and runs the main job; `make test` sets up and runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ./trail-data
export TRAIL_DATA_DIR ?= $(DATA)

.PHONY: setup system-deps node-deps demo test lint typecheck pytest bench screenshots clean

$(BIN)/trail: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,import]'
	touch $(BIN)/trail

setup: $(BIN)/trail

# What the tests drive from Debian: the browser for the interop tests, jq for the docs' examples,
# PostgreSQL and MariaDB for `trail import ahoy`, Ruby with the Ahoy gem for docs/rails.md (and
# the user-token one-liner of docs/collector.md), redis-server for the cluster's tests (each
# test starts its own on a free port). Installing needs root (apt-get).
SYSTEM_PACKAGES := chromium jq postgresql mariadb-server ruby ruby-ahoy-matey redis-server
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	test -z "$$missing" || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; }

tests/interop/node_modules: tests/interop/package.json tests/interop/package-lock.json
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error
	touch tests/interop/node_modules

node-deps: tests/interop/node_modules

# The main job on embedded defaults: sample traffic, a few reports, then the collector in the foreground.
demo: setup
	@test -d $(DATA)/events || $(BIN)/trail sample --data-dir $(DATA) --days 7
	$(BIN)/trail report funnel --data-dir $(DATA) --step '$$view page=/product/*' --step add_to_cart --step checkout --step purchase
	$(BIN)/trail report referrers --data-dir $(DATA) --limit 10
	$(BIN)/trail online timeline --data-dir $(DATA) --from "$$(date -u -d '7 days ago' +%F)" --to "$$(date -u +%F)" --every 1d
	$(BIN)/trail collect --data-dir $(DATA)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

pytest: setup system-deps node-deps
	$(BIN)/pytest -q

test: lint typecheck pytest

# The dashboard's screenshots in docs/img/, taken again by its browser tests.
screenshots: setup system-deps node-deps
	TRAIL_DOCS_SCREENSHOTS=1 $(BIN)/pytest -q tests/interop/test_dashboard.py

bench: setup
	@echo "each bench/*.py prints its own usage (python bench/NAME.py --help); results and how each was run: BENCHMARKS.md"

clean:
	rm -rf $(VENV) tests/interop/node_modules .pytest_cache .mypy_cache .ruff_cache

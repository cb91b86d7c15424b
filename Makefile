# Two commands on a fresh machine: `make train`, then `make test` (see README).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= data/stocks.csv.gz
DATASET ?= artifacts/dataset
CONFIG ?=
CONFIG_OPT := $(if $(CONFIG),--config $(CONFIG),)
# ENGINE=spark: the lake profile (bars and features as Parquet under OHLCV_LAKE, computed on Spark)
ENGINE ?=
ifneq ($(ENGINE),)
export OHLCV_ENGINE := $(ENGINE)
endif

.DEFAULT_GOAL := help
.PHONY: help install train update test test-unit test-timescale test-spark bench bench-scale docs lint ingest features apply materialize dataset verify fit predict services check-online clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

install: $(VENV)/.installed ## Create the virtualenv and install the project (once)

services: install ## Show where PostgreSQL, the online store and MLflow are, and check they answer
	$(PY) -m training services

ingest: install ## Load the bundled market data into market_data.ohlcv_daily
	$(PY) -m training ingest $(DATA)

features: ingest ## Compute the 23 indicators into features.technical_indicators
	$(PY) -m training compute-features

apply: install ## feast apply: register entity, sources, feature views and services
	$(PY) -m training feast apply

materialize: apply ## Load the latest feature row of every symbol into the online store
	$(PY) -m training materialize

dataset: features apply ## Build the training set (Parquet + JSON metadata)
	$(PY) -m training build-dataset --out $(DATASET) $(CONFIG_OPT)

verify: ## Audit the training set for look-ahead (exits 1 on any violation)
	$(PY) -m training verify-leakage --dataset $(DATASET) $(CONFIG_OPT)

fit: ## Purged CV + LightGBM baseline + MLflow run on the built dataset
	$(PY) -m training train --dataset $(DATASET) $(CONFIG_OPT)

check-online: ## Online values equal the newest offline row of every symbol (exits 1 on a mismatch)
	$(PY) -m training check-online

train: dataset verify fit materialize check-online ## The whole pipeline on the bundled data (embedded default if no services set; ENGINE=spark: on Spark)

update: install ## The evening loop: ingest FILE, features, online store, check, score the session: make update FILE=bars.csv
	$(PY) -m training update $(FILE)

predict: install ## Score the latest bar of SYMBOL from the online store: make predict SYMBOL=AAPL
	$(PY) -m training predict --symbol $(SYMBOL)

# The tests run in a random order (pytest-randomly); SEED=N repeats the order of an earlier run.
SEED := $(or $(SEED),$(shell od -An -N4 -tu4 /dev/urandom | tr -d ' '))
PYTEST_ORDER := -p randomly --randomly-seed=$(SEED)
REPRODUCE = { echo "tests failed; this order again: make $@ SEED=$(SEED)"; exit 1; }

test: install ## Every test but the Spark tier: unit and integration, real PostgreSQL, Redis/SQLite, MLflow, local Spark
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@echo "test order seed $(SEED) (make test SEED=$(SEED) repeats it)"
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not spark_tier" $(PYTEST_ORDER) || $(REPRODUCE)

test-unit: install ## The tests that need no service (PostgreSQL and Redis may be down), in under a minute
	$(PY) -m pytest -q -n 2 -m "not integration" $(PYTEST_ORDER) || $(REPRODUCE)

test-timescale: install ## The hypertable tests against a real TimescaleDB started for them (TSDB_START=start-cluster script)
	PYTHON=$(PY) .ci/timescale $(TSDB_START)

test-spark: install ## The lake profile on a standalone Spark cluster and a Spark Connect server started for it
	$(PY) -m pytest -q -s -p no:randomly -m spark_tier tests/test_spark_cluster.py tests/test_spark_connect.py

bench: install ## Benchmarks side by side with their references; writes benchmarks/results/
	$(PY) -m benchmarks

# SIZES="2000x2500 5000x5000" (default; beside a 500x2520 reference), or BARS=5000000 (BARS/2500 x 2500); QUICK=1
BENCH_SCALE_OPTS := $(foreach s,$(SIZES),--size $(s)) $(if $(BARS),--bars $(BARS),) $(if $(QUICK),--quick,)
bench-scale: install ## Every step as its own process on a synthetic universe: wall, peak RSS, µs/bar (BARS=N)
	$(PY) -m benchmarks.bench_scale $(BENCH_SCALE_OPTS)

docs: install ## Regenerate the README's feature list from the indicator definition table
	$(PY) -m training.readme

lint: install ## ruff
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean: ## Remove built artifacts (keeps the virtualenv and the embedded database)
	rm -rf artifacts .pytest_cache .ruff_cache .hypothesis

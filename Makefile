# convserve: `make run` serves the API on :8000, `make test` runs every test.
# Both create .venv with the interpreter in $(PYTHON) (3.11 or newer) on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 0.0.0.0
PORT ?= 8000
PYTEST_ARGS ?= -n 2
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test bench lint typecheck openapi clean help

help:
	@echo "make run        serve convserve on http://localhost:$(PORT) (demo page at /, docs at /docs)"
	@echo "make test       install dev extras and run every test"
	@echo "make bench      run the benchmarks (auto table, engines vs peers, HTTP, PNG encoding)"
	@echo "make lint       ruff and mypy"
	@echo "make openapi    regenerate openapi/openapi.json"

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "convserve needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): service/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e "./service[cpu]"
	touch $@

$(DEV_STAMP): service/pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e "./service[cpu,dev]" -e ./clients/python
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/uvicorn convserve.main:app --host $(HOST) --port $(PORT) --no-access-log

test: $(DEV_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(BENCH_STAMP): service/pyproject.toml $(DEV_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e "./service[cpu,dev,bench]"
	touch $@

# bench_auto measures engine="auto"'s table and rewrites service/src/convserve/conv/auto_table.json
# (the repository keeps the last one); bench_core then compares the engines with their peers.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.bench_auto --write
	$(BIN)/python -m bench.bench_core
	$(BIN)/python bench/bench_http.py
	$(BIN)/python bench/bench_encode.py

lint: $(DEV_STAMP)
	$(BIN)/ruff check service clients tests bench
	$(BIN)/mypy

openapi: $(DEV_STAMP)
	$(BIN)/python -m convserve.openapi_export openapi/openapi.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

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

.PHONY: run test bench loadtest lint typecheck openapi clean help

help:
	@echo "make run        serve convserve on http://localhost:$(PORT) (demo page at /, docs at /docs)"
	@echo "make test       install dev extras and run every test"
	@echo "make bench      run the benchmarks (engines, HTTP, PNG encoding)"
	@echo "make loadtest   burst, overload, 10 min soak and faults against 2 workers (~15 min)"
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

bench: $(DEV_STAMP)
	$(BIN)/python bench/bench_core.py
	$(BIN)/python bench/bench_http.py
	$(BIN)/python bench/bench_encode.py

# LOADTEST_ARGS="--soak-s 60" shortens the soak; "--short" is the form `make test` runs.
loadtest: $(DEV_STAMP)
	$(BIN)/python bench/loadtest.py $(LOADTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check service clients tests bench
	$(BIN)/mypy

openapi: $(DEV_STAMP)
	$(BIN)/python -m convserve.openapi_export openapi/openapi.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

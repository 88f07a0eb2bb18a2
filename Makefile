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
# thumbor, the HTTP peer of bench/bench_http.py, in a virtual environment of its own: it pins
# its own Pillow, which must not replace the service's.
THUMBOR_VENV := .venv-thumbor
THUMBOR_VERSION := 7.8.0
TS_CLIENT := clients/typescript
NODE_STAMP := $(TS_CLIENT)/node_modules/.installed

.PHONY: run test bench loadtest lint typecheck openapi clean help

help:
	@echo "make run        serve convserve on http://localhost:$(PORT) (demo page at /, docs at /docs)"
	@echo "make test       install dev extras and run every test"
	@echo "make bench      run the benchmarks (auto table, engines vs peers, I/O, HTTP, PNG encoding, CLI batches)"
	@echo "make loadtest   burst, overload, 10 min soak and faults against 2 workers (~15 min)"
	@echo "make lint       ruff, mypy and tsc --noEmit"
	@echo "make openapi    regenerate openapi/openapi.json and the TypeScript client's types"

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "convserve needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): service/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e "./service[cpu]"
	touch $@

$(DEV_STAMP): service/pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e "./service[cpu,dev]" -e ./clients/python
	touch $@ $(RUN_STAMP)

# The TypeScript client's dev tools (tsc, openapi-typescript), pinned by package-lock.json.
$(NODE_STAMP): $(TS_CLIENT)/package.json $(TS_CLIENT)/package-lock.json
	cd $(TS_CLIENT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(RUN_STAMP)
	$(BIN)/uvicorn convserve.main:app --host $(HOST) --port $(PORT) --no-access-log

test: $(DEV_STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(BENCH_STAMP): service/pyproject.toml $(DEV_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e "./service[cpu,dev,bench]"
	touch $@

$(THUMBOR_VENV)/bin/thumbor:
	$(PYTHON) -m venv $(THUMBOR_VENV)
	$(THUMBOR_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "thumbor==$(THUMBOR_VERSION)"

# bench_auto measures engine="auto"'s table and rewrites service/src/convserve/conv/auto_table.json
# (the repository keeps the last one); bench_core then compares the engines with their peers.
bench: $(BENCH_STAMP) $(THUMBOR_VENV)/bin/thumbor
	$(BIN)/python bench/bench_io.py
	$(BIN)/python -m bench.bench_auto --write
	$(BIN)/python -m bench.bench_core
	$(BIN)/python bench/bench_http.py
	$(BIN)/python bench/bench_encode.py
	$(BIN)/python bench/bench_batch.py

# LOADTEST_ARGS="--soak-s 60" shortens the soak; "--short" is the form `make test` runs.
loadtest: $(DEV_STAMP)
	$(BIN)/python bench/loadtest.py $(LOADTEST_ARGS)

lint: $(DEV_STAMP) $(NODE_STAMP)
	$(BIN)/ruff check service clients tests bench
	$(BIN)/mypy
	cd $(TS_CLIENT) && npm run --silent typecheck

# The OpenAPI document, then the TypeScript client's generated types and the page's copy of it.
openapi: $(DEV_STAMP) $(NODE_STAMP)
	$(BIN)/python -m convserve.openapi_export openapi/openapi.json
	cd $(TS_CLIENT) && npm run --silent generate && npm run --silent build

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis $(TS_CLIENT)/node_modules $(TS_CLIENT)/dist

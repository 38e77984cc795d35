# Two commands on a fresh machine: `make run` and `make test`. Both bootstrap .venv themselves:
# `run` installs only what running needs (`pip install -e .`), `test`, `lint`, `bench` and
# `chaos` the dev extras too (pytest, ruff, mypy, schemathesis, ...).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed
DATABASE_URL ?= sqlite:///conveyor.db

.PHONY: run test lint bench chaos clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11+ is required ($(PYTHON) is $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

# the dev extras include everything `run` needs
$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP) $(RUN_STAMP)

# `serve` logs the address it listens on (HOST and PORT, or --host and --port, choose it)
run: $(RUN_STAMP)
	@echo "Seeding 20 demo jobs into $(DATABASE_URL), then serving"
	$(BIN)/conveyor seed --count 20 --database-url '$(DATABASE_URL)'
	$(BIN)/conveyor serve --database-url '$(DATABASE_URL)'

lint: $(DEV_STAMP)
	$(BIN)/ruff check conveyor tests bench
	$(BIN)/ruff format --check conveyor tests bench
	$(BIN)/mypy

# Two pytest processes (TEST_PROCESSES): the process tests mostly wait on the workers they
# start, so two at a time take about two thirds of the time of one after another. Tests
# marked `exclusive` (they restart the machine's PostgreSQL) run afterwards, alone.
TEST_PROCESSES ?= 2
test: lint
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) -m "not exclusive"
	$(BIN)/python -m pytest -m exclusive

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

bench: $(DEV_STAMP)
	$(BIN)/python -m bench.run

chaos: $(DEV_STAMP)
	$(BIN)/python -m bench.chaos --store sqlite --jobs 20000
	$(BIN)/python -m bench.chaos --store postgres --jobs 20000
	$(BIN)/python -m bench.chaos --store redis --jobs 20000

# make demo   - create .venv, install, run the simulated demo site on the embedded defaults
# make test   - create .venv, install the test tools and the servers the suite needs, run it
# make lint   - ruff, the import-linter contracts and mypy (make test runs it first)
# make bench  - run the benchmarks in bench/ (15 min budget), figures as JSON under build/bench/
# Installs are pinned by constraints.txt and re-run only when pyproject.toml or it changes.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
BUILD  := build
# The suite waits on sockets and servers more than it computes: three workers on two cores.
# Each worker starts with a third of the tests in collection order, slow ones first
# (tests/conftest.py), and a worker that runs out takes half of the longest queue left
# (worksteal): with xdist's default the first batch stayed where it was sent, and one worker
# ran on alone for the last 70 s of a 622-s run.
TEST_WORKERS ?= 3

.PHONY: demo test lint bench services clean

$(PY):
	@bash .ci/make-venv.sh "$(PYTHON)" "$(VENV)"

$(VENV)/.run-deps: $(PY) pyproject.toml constraints.txt
	$(PIP) install -c constraints.txt -e .
	@touch $@

$(VENV)/.test-deps: $(VENV)/.run-deps
	$(PIP) install -c constraints.txt -e '.[test]'
	@touch $@

demo: $(VENV)/.run-deps
	$(VENV)/bin/scada demo

services:
	@bash .ci/install-services.sh "$(BUILD)"

lint: $(VENV)/.test-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test: lint $(VENV)/.test-deps services
	SCADA_TEST_BUILD=$(abspath $(BUILD)) SCADA_TEST_REQUIRE_SERVICES=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: $(VENV)/.test-deps services
	$(PY) bench/run_all.py

clean:
	rm -rf $(BUILD) .pytest_cache .mypy_cache .ruff_cache

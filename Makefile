# The two set-up commands of the README: `make up` and `make test`. Each installs what it needs:
#   make up    the runtime only (`pip install -e .`): no test tools, no Terraform
#   make test  the runtime, the Terraform provider and the test tools (`pip install -e '.[test]'`)
# pip prints what it collects and downloads as it goes (no --quiet: a first install takes minutes).
PYTHON ?= python3
VENV   := .venv
PIP    := $(VENV)/bin/pip --disable-pip-version-check
UP_STAMP   := $(VENV)/.up-stamp
TEST_STAMP := $(VENV)/.installed-stamp
# the suite runs in parallel (pytest-xdist): one worker per core, at most 4; each worker starts its
# own servers on its own ports. `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= auto
TEST_DIST    ?= worksteal

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(UP_STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "== installing nhi-broker (runtime only) into $(VENV)"
	$(PIP) install -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "== installing nhi-broker with the Terraform provider and the test tools into $(VENV)"
	$(PIP) install -e '.[test]'
	touch $@ $(UP_STAMP)

.PHONY: install up test lint bench
install: $(TEST_STAMP)

# `exec`: the broker replaces the recipe's shell, so a signal reaches it directly; `up` exits 0
# after a clean stop on Ctrl-C or SIGTERM (make then reports no error)
up: $(UP_STAMP)         ## run the broker on its embedded default (OpenBao dev server + SQLite + demo)
	exec $(VENV)/bin/nhi-broker up $(ARGS)

test: $(TEST_STAMP)     ## run the whole test suite against real OpenBao, PostgreSQL, moto, Terraform
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --maxprocesses 4 --dist $(TEST_DIST) $(PYTEST_ARGS)

lint: $(TEST_STAMP)     ## the checks CI runs before the tests: ruff check + format, mypy --strict, import contracts
	$(VENV)/bin/ruff check broker scanners rotation policies tests benchmarks terraform
	$(VENV)/bin/ruff format --check broker scanners rotation policies tests benchmarks terraform
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

BENCHMARKS := issue_latency decision_latency revocation_latency scan_bench scan_sources backend_latency audit_chain exchange_latency walkthrough_latency gateway_overhead

bench: $(TEST_STAMP)    ## print every benchmark's figures (a few minutes; see docs/benchmarks.md)
	for b in $(BENCHMARKS); do $(VENV)/bin/python benchmarks/$$b.py || exit 1; done

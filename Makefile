# The two set-up commands of the README: `make up` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV   := .venv
# the suite runs in parallel (pytest-xdist): one worker per core, at most 4; each worker starts its
# own servers on its own ports. `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= auto
TEST_DIST    ?= worksteal
STAMP  := $(VENV)/.installed-stamp

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

.PHONY: install up test lint bench
install: $(STAMP)

up: $(STAMP)            ## run the broker on its embedded default (OpenBao dev server + SQLite + demo)
	$(VENV)/bin/nhi-broker up $(ARGS)

test: $(STAMP)          ## run the whole test suite against real OpenBao, PostgreSQL, moto, Terraform
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --maxprocesses 4 --dist $(TEST_DIST) $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check broker scanners rotation policies tests benchmarks terraform

BENCHMARKS := issue_latency decision_latency revocation_latency scan_bench scan_sources backend_latency

bench: $(STAMP)         ## print every benchmark's figures (a few minutes; see docs/benchmarks.md)
	for b in $(BENCHMARKS); do $(VENV)/bin/python benchmarks/$$b.py || exit 1; done

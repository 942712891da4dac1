# The two set-up commands of the README: `make up` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV   := .venv
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
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check broker scanners rotation policies tests benchmarks terraform

bench: $(STAMP)
	for b in benchmarks/*.py; do $(VENV)/bin/python $$b || exit 1; done

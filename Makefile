# The two commands of the README: `make plan` and `make test`. Both set up .venv themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lmrun-installed
STACK ?= dev
# Parallel test workers: one per core (2 on CI).
WORKERS ?= auto

.PHONY: plan test lint typecheck unit venv bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --compile -r requirements-dev.txt
	touch $@

venv: $(STAMP)

plan: $(STAMP)
	$(PY) -m lmrun plan --stack $(STACK)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) scripts/link_tree.py . build/typecheck
	MYPYPATH=build/typecheck $(PY) -m mypy -p lmrun

unit: $(STAMP)
	$(PY) -m pytest -n $(WORKERS)

test: lint typecheck unit

bench: $(STAMP)
	$(PY) scripts/benchmark.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis

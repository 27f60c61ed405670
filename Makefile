# The two commands of the README: `make plan` and `make test`. Both set up .venv themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Two stamps: `make plan` needs only the runtime (requirements.txt); `make test` adds the test tools.
RUNTIME := $(VENV)/.lmrun-runtime
DEV := $(VENV)/.lmrun-dev
STACK ?= dev
# Parallel test workers: one per core (2 on CI).
WORKERS ?= auto

.PHONY: plan test lint typecheck unit venv bench clean

$(RUNTIME): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --compile -r requirements.txt
	touch $@

$(DEV): $(RUNTIME) requirements-dev.txt
	$(PY) -m pip install --quiet --compile -r requirements-dev.txt
	touch $@

venv: $(DEV)

plan: $(RUNTIME)
	$(PY) -m lmrun plan --stack $(STACK)

# The scripts and Python helpers that run on VMs (render/scripts/, shipped as package data): ruff covers the
# helpers with the rest of the tree, shellcheck the scripts, mypy the helpers on their own (they run with the
# VM's python3, stdlib only; mypy's oldest target is 3.10, tests/test_embedded_programs.py parses them as 3.9).
VM_SCRIPTS := $(wildcard render/scripts/*.sh)
VM_HELPERS := $(wildcard render/scripts/*.py)

lint: $(DEV)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/shellcheck --severity=style $(VM_SCRIPTS)

typecheck: $(DEV)
	$(PY) scripts/link_tree.py . build/typecheck
	MYPYPATH=build/typecheck $(PY) -m mypy -p lmrun
	$(PY) -m mypy --strict --python-version 3.10 $(VM_HELPERS)

unit: $(DEV)
	$(PY) -m pytest -n $(WORKERS)

test: lint typecheck unit

bench: $(DEV)
	$(PY) scripts/benchmark.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis

# UltraMN developer entry points. Every target creates .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch; a looser pin pulls several GB of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
PYTEST_WORKERS ?= 2

.PHONY: install test lint fmt up clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[train,serve,embedded,dev]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install ultramn with every extra

test: install  ## the README's test command: lint, type-check, then the whole test suite
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy ultramn gateway export
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --timeout 900

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy ultramn gateway export

fmt: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean-venv:
	rm -rf $(VENV)

up: install  ## the README's main command: embedded Triton + gateway + web viewer on CPU (port 8080)
	$(PY) -m gateway.up

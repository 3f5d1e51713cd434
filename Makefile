# distress — the two commands a fresh machine needs are `make run` and `make test`; both set up what they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
KAFKA_HOME := .local/kafka
VENV_STAMP := $(VENV)/.installed
KAFKA_STAMP := $(KAFKA_HOME)/.verified
# uv: the python3.11's own when it has one, else a private copy in its own venv (a Debian system Python refuses
# `pip install` outside a venv: externally-managed-environment).
UV_HOME := .local/uv
UV = $(if $(shell python3.11 -m uv --version 2>/dev/null),python3.11 -m uv,$(UV_HOME)/bin/uv)
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup run test lint system-deps training-deps broker-up broker-down clean

setup: system-deps $(VENV_STAMP) $(KAFKA_STAMP) ## Debian packages, .venv with the project, the Kafka jars (idempotent).

$(VENV_STAMP): pyproject.toml | system-deps
	@command -v python3.11 >/dev/null || { echo "error: Python 3.11 is required (python3.11 not found on PATH)" >&2; exit 1; }
	@python3.11 -m uv --version >/dev/null 2>&1 || $(UV_HOME)/bin/uv --version >/dev/null 2>&1 || \
	  { python3.11 -m venv --clear $(UV_HOME) && $(UV_HOME)/bin/pip install -q --disable-pip-version-check uv; }
	$(UV) venv --allow-existing --python python3.11 $(VENV)
	$(UV) pip install --python $(PY) -e '.[dev]'
	@touch $@

$(KAFKA_STAMP): tools/kafka/pom.xml tools/kafka/SHA256SUMS tools/kafka/install.sh | system-deps
	bash tools/kafka/install.sh $(KAFKA_HOME)

system-deps: ## The missing Debian packages of tools/debian-packages.txt (as root or sudo; else says what to run).
	@bash tools/system-deps.sh tools/debian-packages.txt

training-deps: ## Also the Debian data packages that retraining the classifier reads.
	@bash tools/system-deps.sh tools/debian-packages.txt tools/debian-packages-training.txt

run: setup ## The product demo on embedded defaults.
	$(VENV)/bin/distress demo

test: setup ## The whole test suite (starts its own Kafka broker on a private port).
	$(PY) -m pytest

lint: setup ## ruff (lint and format), mypy strict, and the layer contracts of pyproject.toml (import-linter).
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

broker-up: setup
	$(VENV)/bin/distress broker up

broker-down: setup
	$(VENV)/bin/distress broker down

clean:
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .ruff_cache

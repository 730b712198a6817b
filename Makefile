# One entry point for every job. `make test` and `make demo` work on a fresh machine: they set up
# the pinned toolchain first (Python venvs from the lock files, Node 22 and the CDK CLI from
# package.json). Nothing is installed globally.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
CHECKOV_VENV := .venv-checkov
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(CURDIR)/node_modules/.bin:$(BIN):$(PATH)
export PYTHONPATH := $(CURDIR)
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export CDK_DISABLE_CLI_TELEMETRY := true
PYTEST_ARGS ?= -n auto --dist loadgroup  # loadgroup: the e2e modules that share one demo run share a worker
DEMO_ARGS ?=  # e.g. --keep-running: keep the sandbox up after the summary for `make notebook`

.PHONY: help install synth summary test unit integration infra e2e lint demo notebook deploy destroy bench clean lock

help:
	@echo "make demo     set up, then run the product end to end on the local sandbox"
	@echo "make test     set up, then run every test and gate (nag packs, cfn-lint, checkov, shellcheck, ruff, actionlint, zizmor)"
	@echo "make unit     the tests that need no server and no app synth, in seconds (one tier of make test)"
	@echo "make integration, make infra, make e2e: the other tiers (moto/fakesnow, synthesized app, sandbox)"
	@echo "make notebook a local JupyterLab set up by the real lifecycle scripts against the sandbox (Ctrl-C stops it)"
	@echo "make synth    write cdk.out/ (no AWS credentials needed); make summary to read it"
	@echo "make deploy   deploy all stacks to the account of your AWS credentials"
	@echo "make bench    run the benchmarks and write bench/RESULTS.md"

install: $(VENV)/.installed $(CHECKOV_VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

synth: install
	rm -rf cdk.out
	cdk synth --quiet
	@ls cdk.out/*.template.json

# .github: actionlint (workflow syntax, expressions, shellcheck on run: blocks) and zizmor's security
# audits of the workflows and dependabot.yml (pedantic: code smells count too; offline: no GitHub
# API). Any finding fails, and so does a file zizmor cannot parse (--strict-collection).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/actionlint -shellcheck=$(BIN)/shellcheck
	$(BIN)/zizmor --offline --strict-collection --persona pedantic --no-progress .github

test: install lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The tiers of `make test` (tests/conftest.py marks each test from the fixtures it uses). The unit
# tier runs on one worker: starting xdist workers costs more than its tests take.
unit: PYTEST_ARGS =
unit integration infra e2e: install
	$(BIN)/python -m pytest -m $@ $(PYTEST_ARGS)

demo: install
	$(BIN)/python -m sandbox $(DEMO_ARGS)

notebook: install
	$(BIN)/python -m sandbox.notebook_ui

summary: synth
	$(BIN)/python -m stacks.summary cdk.out

deploy: install
	cdk deploy --all --require-approval broadening

destroy: install
	cdk destroy --all

bench: install
	$(BIN)/python -m bench.run

lock:
	rm -rf /tmp/snowsage-lock && $(PYTHON) -m venv /tmp/snowsage-lock
	/tmp/snowsage-lock/bin/pip install --quiet -r requirements.in
	(echo "# Lock file: regenerate with \`make lock\` (pip freeze of a venv built from requirements.in)."; \
	  /tmp/snowsage-lock/bin/pip freeze --all | grep -v '^pip==') > requirements.txt

clean:
	rm -rf cdk.out .build .sandbox .pytest_cache .ruff_cache .mypy_cache

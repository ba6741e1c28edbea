# proxyhpo: `make run` (install + demo study end to end on the CPU) and `make test` are all a new machine needs.
SHELL := /bin/bash
# A failing command anywhere in a pipeline fails the recipe line (make deploy pipes credentials into helm).
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
STAMP := $(VENV)/.installed
DEMO ?= examples/demo.yaml
PYTEST_ARGS ?= -n auto --dist loadgroup

.PHONY: install run test lint bench compile golden mlflow-ui clean help checkov

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml requirements.lock
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# requirements.lock pins every transitive dependency; torch==2.13.0 resolves to the CPU wheel on these machines
	$(PY) -m pip install --quiet --constraint requirements.lock --editable '.[test]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned dependencies

# The policy scanner in a venv of its own: checkov 3's pins conflict with requirements.lock (tabulate, termcolor).
# `make test` makes it before pytest starts (its install is not test time); tests/policy makes it on demand when pytest
# runs alone; `make install` and `make run` do not, so a machine that never tests never downloads it.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
$(CHECKOV_STAMP): requirements-checkov.lock
	rm -rf $(CHECKOV_VENV) && $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --requirement requirements-checkov.lock
	touch $(CHECKOV_STAMP)

checkov: $(CHECKOV_STAMP)  ## create .venv-checkov with the pinned checkov 3 (requirements-checkov.lock) for tests/policy

run: $(STAMP)  ## run the demo study end to end on this machine (CPU or GPU)
	$(VENV)/bin/proxyhpo run $(DEMO) --local

test: $(STAMP) $(CHECKOV_STAMP)  ## the whole test suite (CPU only, well inside CI's limit)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## pyflakes checks with ruff
	$(VENV)/bin/ruff check components pipelines tests bench

bench: $(STAMP)  ## benchmarks; JSON results under bench/results/
	$(PY) bench/bench_similarity.py
	$(PY) bench/bench_training.py
	$(PY) bench/bench_nas.py
	$(PY) bench/bench_search.py
	$(PY) bench/bench_headline.py

compile: $(STAMP)  ## compile every pipeline to build/pipelines/
	$(VENV)/bin/proxyhpo compile --out build/pipelines

golden: $(STAMP)  ## regenerate the golden compiled pipelines under tests/pipelines/golden/ (review the diff)
	$(PY) tests/pipelines/golden.py tests/pipelines/golden

mlflow-ui: $(STAMP)  ## open the MLflow UI on the embedded store
	$(VENV)/bin/mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$${PROXYHPO_HOME:-.proxyhpo}/mlflow.db}" --host 127.0.0.1 --port 5000

clean:  ## remove run outputs (keeps .venv)
	rm -rf .proxyhpo build

-include mk/cluster.mk

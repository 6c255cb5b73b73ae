# precision: everything runs inside .venv, created on first use from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STUDIES := softmax summation variance

.PHONY: help env study test lint format docs-image docs-errors bench clean $(addprefix study-,$(STUDIES))

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

env: $(STAMP)  ## create the environment (.venv) and install the package

study: $(addprefix study-,$(STUDIES))  ## run every default study into results/

study-softmax: $(STAMP)  ## softmax family: exp, softmax, logsumexp, log_softmax, cross-entropy
	$(BIN)/precision run studies/softmax.toml --out results/softmax

study-summation: $(STAMP)  ## summation order, Kahan, accumulators; cancellation in a - b
	$(BIN)/precision run studies/summation.toml --out results/summation

study-variance: $(STAMP)  ## variance algorithms and batch normalisation (eps 1e-5 and finfo)
	$(BIN)/precision run studies/variance.toml --out results/variance

test: $(STAMP)  ## run the test suite (CI runs exactly this)
	$(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check precision tests benchmarks
	$(BIN)/ruff format --check precision tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format precision tests
	$(BIN)/ruff check --fix precision tests

bench: $(STAMP)  ## benchmarks into results/bench/ (about 20 min; BENCH_QUICK=1: under 3 min)
	BENCH_COMMAND="make bench$(if $(filter-out 0,$(BENCH_QUICK)), BENCH_QUICK=$(BENCH_QUICK))" \
	$(BIN)/python -m benchmarks $(if $(filter-out 0,$(BENCH_QUICK)),--quick) --out results/bench

docs-image: $(STAMP)  ## regenerate docs/heatmap_logsumexp.png (the README picture) from a quick run
	$(BIN)/python -m precision.docs_image docs/heatmap_logsumexp.png

docs-errors: $(STAMP)  ## regenerate the README's "Common errors" from the messages the CLI prints
	$(BIN)/python -m precision.docs_errors README.md

clean:  ## remove generated results (keeps results/README.md)
	find results -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +

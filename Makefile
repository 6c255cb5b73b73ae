# precision: everything runs inside .venv, created on first use from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STUDIES := softmax summation variance linear-systems least-squares derivatives descent \
           optimisation constrained frameworks rounding

.PHONY: help env study test lint format docs-image docs-errors bench clean report reproduce \
        $(addprefix study-,$(STUDIES))

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

study-linear-systems: $(STAMP)  ## linear systems: inv(A) b vs LU vs solve; forward and backward error vs kappa
	$(BIN)/precision run studies/linear_systems.toml --out results/linear_systems

study-least-squares: $(STAMP)  ## least squares: normal equations (kappa^2) vs QR and lstsq (kappa); ridge
	$(BIN)/precision run studies/least_squares.toml --out results/least_squares

study-derivatives: $(STAMP)  ## finite differences: V curve of error vs step h, Jacobian and Hessian
	$(BIN)/precision run studies/derivatives.toml --out results/derivatives

study-descent: $(STAMP)  ## gradient descent: learning rate, 2/lambda_max, float16 stagnation and remedies
	$(BIN)/precision run studies/descent.toml --out results/descent

study-optimisation: $(STAMP)  ## Newton vs gradient descent vs BFGS vs kappa(H); critical points
	$(BIN)/precision run studies/optimisation.toml --out results/optimisation

study-constrained: $(STAMP)  ## min ||Xw-y||^2 s.t. ||w||^2 <= C via its Lagrangian: KKT residuals
	$(BIN)/precision run studies/constrained.toml --out results/constrained

study-frameworks: $(STAMP)  ## torch, JAX, TensorFlow kernels vs the textbook softmax family
	$(BIN)/precision run studies/frameworks.toml --out results/frameworks

study-rounding: $(STAMP)  ## emulated float16 arithmetic and stochastic rounding vs stagnation
	$(BIN)/precision run studies/rounding.toml --out results/rounding

report: $(STAMP)  ## the report: results/report/index.html and index.md from the stored studies
	$(BIN)/precision report --results results --out results/report

reproduce: $(STAMP)  ## rerun every stored study from its meta.json and compare with its table
	@set -- $(patsubst %/meta.json,%,$(wildcard results/*/meta.json)); \
	if [ $$# -eq 0 ]; then echo "no study results under results/: run make study first" >&2; exit 2; fi; \
	$(BIN)/precision reproduce "$$@"

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

# precision: everything runs inside .venv, installed from the committed lock (requirements-py311.lock),
# never by resolving the version ranges of pyproject.toml afresh. `make lock` refreshes the lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements-py311.lock
# The lock is for this Python; another one would resolve (and may break) differently.
LOCK_PYTHON := 3.11
# pip freeze as the lock writes it: no comments, torch's local "+cpu" label dropped (the
# constraint torch==2.13.0 selects the CPU build on disk), sorted.
FROZEN := grep -v '^\#' | sed -E 's/^(torch==[^+]*)\+cpu$$/\1/' | LC_ALL=C sort -f
LOCK_BODY := <(grep -v '^\#' $(LOCK))
SHELL := /bin/bash
# Longest first (by each one's time alone, figures included; least_squares 55 s down to
# constrained 4 s on 2026-12-06): the long ones' figures are drawn while the next computes.
STUDIES := least-squares linear-systems summation frameworks descent dot activations optimisation \
           variance norms attention softmax block-formats rounding adam loss-scaling derivatives \
           constrained

.PHONY: help env study test test-latest lock lint format docs-image docs-errors bench clean example \
        report reproduce $(addprefix study-,$(STUDIES))

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# Fails with one line unless $(PYTHON) is the Python the lock was made for.
check-python = @$(PYTHON) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(0 if v == "$(LOCK_PYTHON)" else f"$(PYTHON) is Python {v}; the lock is for Python $(LOCK_PYTHON): make PYTHON=python$(LOCK_PYTHON) ...")'

# A fresh environment whenever the lock or pyproject.toml changes, so that nothing the lock
# no longer names lingers. pip and setuptools come from the lock too, and the package is built
# without build isolation, so that no build step resolves a version range either.
$(STAMP): pyproject.toml $(LOCK)
	$(check-python)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) pip setuptools wheel
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) --no-build-isolation -e '.[test]'
	$(BIN)/python -m pip check
	$(BIN)/python -m pip freeze --all --exclude-editable | $(FROZEN) | diff -u $(LOCK_BODY) - \
	  || { echo "the environment differs from $(LOCK) (lines above)" >&2; exit 1; }
	touch $(STAMP)

env: $(STAMP)  ## create the environment (.venv) and install the package

# One process for every study: one pool of workers (spawned, and their imports done, once),
# and while one study computes, the figures and files of the one before it are made on a
# thread of the main process. Tables and figures are byte for byte those of one study at a
# time.
STUDY_SPECS := $(foreach study,$(STUDIES),studies/$(subst -,_,$(study)).toml)

study: $(STAMP)  ## run every default study into results/ (one process, one pool of workers)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/precision run $(STUDY_SPECS)

# One BLAS thread per process, as for bench: the process executor already runs a worker per
# core, and OpenBLAS's own threads spin against them (a 50 x 50 numpy svd: 23-36 ms with the
# default threads, 1.4-2.4 ms with one; the linear_systems study 240 s -> 148 s serial, its
# tables byte-identical; measured 2026-12-06).
study-%: export OPENBLAS_NUM_THREADS = 1
study-%: export OMP_NUM_THREADS = 1
study-%: export MKL_NUM_THREADS = 1

study-softmax: $(STAMP)  ## softmax family: exp, softmax, logsumexp, log_softmax, cross-entropy
	$(BIN)/precision run studies/softmax.toml --out results/softmax

study-summation: $(STAMP)  ## summation order, Kahan, accumulators; cancellation in a - b
	$(BIN)/precision run studies/summation.toml --out results/summation

study-dot: $(STAMP)  ## dot products of float8/bfloat16 inputs: float32, in-format and limited accumulators, promotion
	$(BIN)/precision run studies/dot.toml --out results/dot

study-block-formats: $(STAMP)  ## quantise then compute: MX, NVFP4 and per-tensor float8 inputs, quantisation error apart
	$(BIN)/precision run studies/block_formats.toml --out results/block_formats

study-activations: $(STAMP)  ## GELU (erf; tanh and sigmoid approximations against exact GELU) and SiLU
	$(BIN)/precision run studies/activations.toml --out results/activations

study-adam: $(STAMP)  ## Adam's update in float16/bfloat16: in-format state vs float32 state
	$(BIN)/precision run studies/adam.toml --out results/adam

study-norms: $(STAMP)  ## LayerNorm and RMSNorm in float16/bfloat16: in-format, float32 statistics, prescaled, torch
	$(BIN)/precision run studies/norms.toml --out results/norms

study-attention: $(STAMP)  ## attention in float16/bfloat16: two-pass, online, blockwise; float32 or in-format statistics; torch
	$(BIN)/precision run studies/attention.toml --out results/attention

study-loss-scaling: $(STAMP)  ## gradient underflow in float16/float8_e5m2/bfloat16: no, static and dynamic loss scale
	$(BIN)/precision run studies/loss_scaling.toml --out results/loss_scaling

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

example: $(STAMP)  ## a user's own kernels (examples/my_kernels.py) in a quick study
	$(BIN)/precision run examples/my_kernels.toml --quick --out results/my_kernels

report: $(STAMP)  ## the report: results/report/index.html and index.md from the stored studies
	$(BIN)/precision report --results results --out results/report

reproduce: $(STAMP)  ## rerun every stored study from its meta.json and compare with its table
	@set -- $(patsubst %/meta.json,%,$(wildcard results/*/meta.json)); \
	if [ $$# -eq 0 ]; then echo "no study results under results/: run make study first" >&2; exit 2; fi; \
	$(BIN)/precision reproduce "$$@"

test: $(STAMP)  ## run the test suite (CI runs exactly this)
	$(BIN)/python -m pytest -q

# Not run by CI: the newest releases the ranges admit, to find a breaking release on purpose.
test-latest:  ## run the tests in a throwaway .venv-latest resolved from pyproject's ranges alone
	$(check-python)
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip
	.venv-latest/bin/python -m pip install --quiet -e '.[test]'
	.venv-latest/bin/python -m pip freeze --all --exclude-editable | $(FROZEN) \
	  | diff -u $(LOCK_BODY) - || true  # what moved since the lock (nothing: no output)
	.venv-latest/bin/python -m pytest -q -p no:cacheprovider

# Resolves every extra (the test extra holds them all) from the ranges in pyproject.toml in a
# throwaway environment and writes what was installed, pip and setuptools included. torch's
# pin (2.13.0, a CPU build) keeps pip from pulling a CUDA build; only pip, not uv, finds it.
lock:  ## refresh requirements-py311.lock from pyproject's ranges (then: make test, make study)
	$(check-python)
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	.venv-lock/bin/python -m pip install --quiet -e '.[test]'
	.venv-lock/bin/python -m pip check
	( echo "# The exact versions every environment of the Makefile installs (pip constraints)."; \
	  echo "# Python $(LOCK_PYTHON), all extras. Regenerate with make lock; do not edit by hand."; \
	  .venv-lock/bin/python -m pip freeze --all --exclude-editable | $(FROZEN) ) > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .venv-lock
	@echo "wrote $(LOCK); now run make test and make study, and commit the lock"

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check precision tests benchmarks examples
	$(BIN)/ruff format --check precision tests benchmarks examples

format: $(STAMP)
	$(BIN)/ruff format precision tests
	$(BIN)/ruff check --fix precision tests

# One BLAS thread: the goals are rates per core, and CPU time (time.process_time) would count
# the idle spinning of BLAS's other threads (a certified n = 200 solve measured 0.41-0.70 s with
# the default threads and 0.13-0.18 s with one, under load).
bench: $(STAMP)  ## benchmarks into results/bench/ (about 20 min; BENCH_QUICK=1: under 3 min)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	BENCH_COMMAND="make bench$(if $(filter-out 0,$(BENCH_QUICK)), BENCH_QUICK=$(BENCH_QUICK))" \
	$(BIN)/python -m benchmarks $(if $(filter-out 0,$(BENCH_QUICK)),--quick) --out results/bench

docs-image: $(STAMP)  ## regenerate docs/heatmap_logsumexp.png (the README picture) from a quick run
	$(BIN)/python -m tools.docs_image docs/heatmap_logsumexp.png

docs-errors: $(STAMP)  ## regenerate the README's "Common errors" from the messages the CLI prints
	$(BIN)/python -m tools.docs_errors README.md

clean:  ## remove generated results (keeps results/README.md)
	find results -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +

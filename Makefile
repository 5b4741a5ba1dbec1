# kbatch: the two commands are `make demo` and `make test`; both set up .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MIN_VENV ?= .venv-min
PYTEST_ARGS ?=
# Tests run in two processes (pytest-xdist): the machines this project is
# built on have two cores, and most tests are Python-bound, one core each.
PYTEST_WORKERS ?= 2
# work stealing: a worker that runs out of tests takes some of the other's
# CI's pins (the CPU build of torch); a user's install does not use them.
CONSTRAINTS := -c constraints/ci.txt
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: help install install-dev demo test test-all test-min bench mutation lint format wheel clean

help:
	@echo "make demo      run the kbatch demo on MNIST-1D (writes kbatch-demo/)"
	@echo "make test      install, lint, run the fast tests"
	@echo "make test-all  the fast and the slow tests (notebooks, fresh-venv install), then test-min"
	@echo "make test-min  the core tests on the oldest supported versions (.venv-min)"
	@echo "make bench     run benchmarks/ and write benchmarks/results/"
	@echo "make mutation  mutation score of the pure math (mutmut; results/mutation.md)"
	@echo "make wheel     build dist/keras_kbatch-*.whl (for a Colab upload)"
	@echo "make lint      ruff check"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps re-run the install whenever the package metadata or the pins change.
# (A .venv made before the rename to keras-kbatch holds the old `kbatch`
# distribution of this checkout: it goes first, the two would share `kbatch/`.)
$(VENV)/.installed-demo: setup.cfg pyproject.toml | $(BIN)/python
	@$(BIN)/python -m pip uninstall --quiet --yes kbatch 2>/dev/null || true
	$(BIN)/python -m pip install --quiet -e ".[examples,plot]"
	@touch $@

$(VENV)/.installed-dev: setup.cfg pyproject.toml constraints/ci.txt | $(BIN)/python
	@$(BIN)/python -m pip uninstall --quiet --yes kbatch 2>/dev/null || true
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) -e ".[dev]"
	@touch $@ $(VENV)/.installed-demo

install: $(VENV)/.installed-demo
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed-demo
	$(BIN)/kbatch demo --out kbatch-demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal -m "not slow and not gpu" $(PYTEST_ARGS)

test-all: lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal -m "not gpu" $(PYTEST_ARGS)
	$(MAKE) test-min

# The floors of setup.cfg (constraints/min.txt), in a venv of their own.
$(MIN_VENV)/.installed: setup.cfg pyproject.toml constraints/min.txt
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/python -m pip install --quiet -c constraints/min.txt -e ".[plot]" "pytest>=7" "scikit-learn>=1.0"
	@touch $@

test-min: $(MIN_VENV)/.installed
	$(MIN_VENV)/bin/python -m pytest -m "not slow and not gpu" -p no:cacheprovider \
		tests/lr tests/scaling tests/critical tests/advisor tests/tuner $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.run_all

# Mutation testing of the pure math (not part of `make test`): mutmut mutates
# the modules of [tool.mutmut] in pyproject.toml and runs their NumPy-only
# tests against each mutant, without Keras (KBATCH_PURE_ONLY, tests/_pure.py).
$(VENV)/.installed-mutation: $(VENV)/.installed-dev
	$(BIN)/python -m pip install --quiet -e ".[mutation]"
	@touch $@

mutation: $(VENV)/.installed-mutation
	rm -rf mutants
	KBATCH_PURE_ONLY=1 $(BIN)/mutmut run --max-children $(PYTEST_WORKERS)
	$(BIN)/python -m benchmarks.mutation

wheel: | $(BIN)/python
	$(BIN)/python -m pip wheel --quiet --no-deps -w dist .
	@ls dist/keras_kbatch-*.whl

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format kbatch tests examples benchmarks

clean:
	rm -rf $(VENV) $(MIN_VENV) build dist *.egg-info .pytest_cache .ruff_cache kbatch-demo mutants

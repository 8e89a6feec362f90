# jaxgd: `make demo` trains the lesson's network; `make test` runs the test suite.
# Both create .venv and install the pinned versions of constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := constraints.txt

.PHONY: install install-test demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/jaxgd train --out runs/demo --overwrite

# The suite runs in PYTEST_WORKERS processes (pytest-xdist), a test file per worker so that the
# experiment fixtures shared by a file's tests run once; PYTEST_WORKERS=0 runs it in this process.
PYTEST_WORKERS ?= 2

test: install-test
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

# PyHessian without its dependencies (numpy, torch): pip would otherwise fetch another torch when the CPU wheel is missing.
bench: install
	$(PIP) install --quiet -c $(CONSTRAINTS) 'torch==2.13.0' || echo "torch not installed: its peers will be skipped"
	$(PIP) install --quiet --no-deps 'pyhessian==0.1' || echo "pyhessian not installed: its peer will be skipped"
	$(BIN)/python -m benchmarks.train_speed
	$(BIN)/python -m benchmarks.hessian_speed

clean:
	rm -rf $(VENV) runs .pytest_cache

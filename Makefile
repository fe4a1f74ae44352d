# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/python -m pip

.PHONY: demo test test-all install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

# pip resolves torch and torchvision together from the registry (never pinned here).
$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[all]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[all,dev]"
	touch $@ $(VENV)/.installed-all

install: $(VENV)/.installed-all
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/ssdd demo

# two pytest workers (pytest-xdist, work stealing: a long test does not leave the other worker idle), one torch
# thread each: the fast suite in about 90 s on 2 cores instead of 165 s
TEST_WORKERS ?= 2

test: install-dev
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

test-all: install-dev
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m ""

clean:
	rm -rf $(VENV) runs reports *.egg-info

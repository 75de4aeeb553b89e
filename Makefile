# Set-up and everyday commands. `make demo` and `make test` create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel first: a bare `torch` requirement would pull several GB of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
SHARED_DATA ?= $(abspath ../shared/data)

.PHONY: install demo test test-slow lint tables clean

$(BIN)/cfc-bench: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/cfc-bench

demo: install
	rm -rf outputs/demo
	$(BIN)/cfc-bench train -m experiment=demo model=cfc,lstm hydra.sweep.dir=outputs/demo
	$(BIN)/cfc-bench tables --runs outputs/demo --out outputs/demo/tables

test: install
	$(BIN)/pytest -q

test-slow: install
	$(BIN)/pytest -q -m slow

lint: install
	$(BIN)/ruff check cfc_bench tests data_scripts
	$(BIN)/ruff format --check cfc_bench tests data_scripts

tables: install
	$(BIN)/cfc-bench tables --runs results/runs --out results/tables

clean:
	rm -rf outputs build dist *.egg-info .pytest_cache

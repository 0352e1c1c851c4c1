# The two commands of the README: `make demo` (set up + run the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	# KServe's SDK for its typed models only (tests/deploy/test_kserve.py): its dependencies are its model
	# server's (FastAPI, pandas, ...), which the tests never import; six, its models' one, is in the dev extra
	$(BIN)/pip install --quiet --no-deps "kserve==0.21.0"
	touch $(STAMP)

# The main job: the compiler's demo (train, convert, validate, classify), then the server on the same
# model, which prints a curl request to paste into another terminal (Ctrl+C stops it).
demo: $(STAMP)
	$(BIN)/wasinfer demo
	$(BIN)/wasinfer serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -n 2 --dist loadgroup -q

test-fast: lint
	$(BIN)/pytest -n 2 --dist loadgroup -q -m "not slow and not chaos and not k8s"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

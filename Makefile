# The two commands a newcomer needs: `make start` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: start test lint bench bench-smoke clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m compileall -q cronhub examples  # as a wheel install would
	touch $@

## Start the daemon in the foreground on the example registry (Ctrl-C stops it).
start: $(BIN)/.installed
	$(BIN)/cronhub start --config jobs.toml

## Lint and run the whole test suite.
test: $(BIN)/.installed
	$(BIN)/ruff check cronhub tests bench examples
	$(BIN)/pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check cronhub tests bench examples
	$(BIN)/ruff format --check cronhub tests bench examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache var cronhub.db* cronhub.sock

## The benchmark suite (docs in bench/README.md); about 10 minutes on 2 cores.
bench: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python -m bench.run

## A few-second run of the bench, to check that it works.
bench-smoke: $(BIN)/.installed
	$(BIN)/python -m bench.run --quick --only cli

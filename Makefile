# The two commands of the README: `make demo` and `make test`.
# Each sets the machine up first (scripts/setup.sh is quick when done).
VENV := .venv
BIN := $(VENV)/bin
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: setup demo test bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/mqttids demo

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf mqttids-data bench/out test-artifacts .pytest_cache

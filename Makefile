# The two commands: `make run` (the main job, offline, on the built-in sample) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.drtl-installed

.PHONY: setup run test bench clean

setup: $(STAMP)

# Idempotent: re-installs only when pyproject.toml or requirements.lock change.
# torch is pinned to 2.13.0 (the CPU wheel on this machine's disk); requirements.lock pins the rest.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $(STAMP)

# The main job. For now: build the sample data, validate it, evaluate bicubic on its test pairs.
run: setup
	$(BIN)/drtl data sample data/sample --scale 2 --seed 0
	$(BIN)/drtl data validate data/sample/pool --scale 2 --test data/sample/test
	$(BIN)/drtl data validate data/sample/test --scale 2
	$(BIN)/drtl evaluate --method bicubic --data data/sample/test --scale 2 --out reports/bicubic.json

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/bench_degradations.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) .pytest_cache

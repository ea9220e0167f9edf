# The two commands: `make run` (the main job, offline, on the built-in sample) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.drtl-installed

.PHONY: setup run test test-fast test-e2e bench clean city100 browser control headroom bank nonlinear

setup: $(STAMP)

# Idempotent: re-installs only when pyproject.toml or requirements.lock change.
# requirements.lock pins the whole environment (torch==2.13.0: the CPU wheel on this machine's disk),
# so it installs with --no-deps: no resolver, no metadata round trips, the same set every time.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# The main job: the whole DAG (dvc.yaml) on the built-in sample, offline. `dvc pull data.dvc`
# restores data/sample from the in-repository remote dvc-remote/; the stages call the venv's `drtl`.
run: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" DVC_NO_ANALYTICS=1 $(BIN)/dvc pull data.dvc
	PATH="$(CURDIR)/$(BIN):$$PATH" DVC_NO_ANALYTICS=1 $(BIN)/dvc repro
	@cat reports/results.md

# The City100 table on the real iPhone X pairs (needs ../shared/datasets; docs/results.md): import, then run.
SHARED ?= ../shared/datasets
city100: setup
	$(BIN)/drtl data import city100 $(SHARED)/city100-iphonex data/city100_x2/pool --scale 2 --names 001-010
	$(BIN)/drtl data import city100 $(SHARED)/city100-iphonex data/city100_x2/test --scale 2 --names 011-020
	$(BIN)/drtl data import set5 $(SHARED)/set5 data/set5_x2 --scale 2
	test -d data/sample || $(BIN)/drtl data sample data/sample --scale 2
	$(BIN)/drtl experiment --params configs/city100_x2.yaml
	@cat outputs/city100_x2/reports/results.md

# The camera-free half of `drtl adapt` (docs/adapt.md): synthesized tasks, bank and uniform model, built once with
# the adapt profile and versioned by DVC (banks/adapt_x2.dvc); `drtl adapt --bank banks/adapt_x2` reuses it.
BANK ?= banks/adapt_x2
bank: setup
	$(BIN)/drtl adapt-bank --out $(BANK) --scale 2
	DVC_NO_ANALYTICS=1 $(BIN)/dvc add $(BANK)

# Headroom on a validation split of the City100 pool (001-005 shots, 006-010 evaluation; never the
# test pairs): one pre-training per task family, fine-tuned and ranked (docs/results.md).
headroom: setup
	test -d data/city100_x2_val/pool || $(BIN)/drtl data import city100 $(SHARED)/city100-iphonex data/city100_x2_val/pool --scale 2 --names 001-005
	test -d data/city100_x2_val/test || $(BIN)/drtl data import city100 $(SHARED)/city100-iphonex data/city100_x2_val/test --scale 2 --names 006-010
	test -d data/set5_x2 || $(BIN)/drtl data import set5 $(SHARED)/set5 data/set5_x2 --scale 2
	$(BIN)/drtl headroom --params configs/city100_x2_val.yaml

# A camera the linear fit cannot reproduce (docs/results.md): City100's HR pairs 001-020 through the
# target camera `camera_nonlinear` (heavy denoising smear, wide sharpening halos, JPEG quality 25, each
# outside the bank's ranges), split like City100 (pool 001-010, test 011-020); the City100 profile
# retargeted by target.pool / target.test alone. NL_SPLIT=val: shots 001-005, evaluation 006-010.
NL_SPLIT ?= test
nonlinear: setup
	test -d data/city100_x2/pool || $(BIN)/drtl data import city100 $(SHARED)/city100-iphonex data/city100_x2/pool --scale 2 --names 001-010
	test -d data/city100_x2/test || $(BIN)/drtl data import city100 $(SHARED)/city100-iphonex data/city100_x2/test --scale 2 --names 011-020
	test -d data/city100_x2_val/pool || $(BIN)/drtl data import city100 $(SHARED)/city100-iphonex data/city100_x2_val/pool --scale 2 --names 001-005
	test -d data/city100_x2_val/test || $(BIN)/drtl data import city100 $(SHARED)/city100-iphonex data/city100_x2_val/test --scale 2 --names 006-010
	test -d data/set5_x2 || $(BIN)/drtl data import set5 $(SHARED)/set5 data/set5_x2 --scale 2
	test -d data/sample || $(BIN)/drtl data sample data/sample --scale 2
	test -d data/nonlinear_x2/pool || $(BIN)/drtl data target camera_nonlinear data/nonlinear_x2/pool --hr data/city100_x2/pool --scale 2
	test -d data/nonlinear_x2/test || $(BIN)/drtl data target camera_nonlinear data/nonlinear_x2/test --hr data/city100_x2/test --scale 2
	test -d data/nonlinear_x2/val_pool || $(BIN)/drtl data target camera_nonlinear data/nonlinear_x2/val_pool --hr data/city100_x2_val/pool --scale 2
	test -d data/nonlinear_x2/val_test || $(BIN)/drtl data target camera_nonlinear data/nonlinear_x2/val_test --hr data/city100_x2_val/test --scale 2
	$(BIN)/drtl experiment --params configs/city100_x2.yaml -S outputs=outputs/nonlinear_x2_$(NL_SPLIT) \
	  -S target.pool=data/nonlinear_x2/$(if $(filter val,$(NL_SPLIT)),val_pool,pool) \
	  -S target.test=data/nonlinear_x2/$(if $(filter val,$(NL_SPLIT)),val_test,test)
	@cat outputs/nonlinear_x2_$(NL_SPLIT)/reports/results.md

# The positive control (docs/results.md): one bank task is held out of the bank (aux.exclude) and
# becomes the target, made from HR images the bank never saw (the sample's pool and test HR); the
# relation graph must find its neighbours and DRTL must beat its uniform twins. Writes reports/control/.
CONTROL_TASK ?= jpeg_q30
control: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" DVC_NO_ANALYTICS=1 $(BIN)/dvc pull -q data.dvc
	$(BIN)/drtl data target $(CONTROL_TASK) outputs/control/target/pool --hr data/sample/pool --scale 2 --seed 0
	$(BIN)/drtl data target $(CONTROL_TASK) outputs/control/target/test --hr data/sample/test --scale 2 --seed 1
	$(BIN)/drtl experiment --params configs/control.yaml -S 'aux.exclude=[$(CONTROL_TASK)]'
	mkdir -p reports/control
	cp outputs/control/reports/results.csv outputs/control/reports/results.md outputs/control/reports/comparisons.csv reports/control/
	cp outputs/control/relation/drtl_k1_s0/graphs/k1_s0/ranking.csv reports/control/ranking_k1_s0.csv
	@cat reports/control/results.md; head -6 reports/control/ranking_k1_s0.csv

# The MLflow UI browser test (tests/test_mlflow_ui.py) drives Debian's chromium through Playwright
# (no `playwright install`, no browser download): installed once, quietly; a no-op when present.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$${DRTL_SKIP_BROWSER:-0}" != 1 ]; then \
	  { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >/dev/null 2>&1 || \
	  echo "make: could not install chromium with apt-get; tests/test_mlflow_ui.py will fail" >&2; fi

# The tests in two lanes (tests/conftest.py): the fast lane of unit and contract tests (`-m "not slow"`),
# and the end-to-end lane (`-m slow`), in which each orchestrator runs the tiny plan once and the
# stage, parity, DVC and tracking tests read those runs. `make test` runs the two lanes at once (the
# end-to-end lane's stages run one thread each, so the two share 2 cores well): the fast lane prints
# as it goes, the end-to-end lane's output follows it (kept in $(SLOW_LOG)); it fails if either fails.
SLOW_LOG := $(VENV)/pytest-slow.log
test: setup browser
	@$(BIN)/python -m pytest -q -m slow > $(SLOW_LOG) 2>&1 & slow=$$!; \
	$(BIN)/python -m pytest -q -m "not slow"; fast=$$?; \
	wait $$slow; e2e=$$?; echo "--- end-to-end lane (-m slow) ---"; cat $(SLOW_LOG); \
	test $$fast -eq 0 && test $$e2e -eq 0

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

test-e2e: setup browser
	$(BIN)/python -m pytest -q -m slow

# Every benchmark, each figure next to its same-run baseline, into docs/benchmarks.md (the section
# between the `make bench` markers; benchmarks/run_all.py). Takes about 15 minutes on 2 cores.
bench: setup
	$(BIN)/python benchmarks/run_all.py --threads 2

clean:
	rm -rf $(VENV) .pytest_cache

# The CPU image, built and checked on this machine (docs/kubeflow.md, "Container images"): a Debian
# bookworm base made with debootstrap, `buildah build` of docker/Dockerfile.cpu (requirements.lock
# exactly), the OCI archive and its digest under outputs/image/, then one stage chain run in the image
# and on the host, compared byte for byte (docker/build.sh). Outside `make test`: it takes minutes.
.PHONY: image
image: setup
	docker/build.sh

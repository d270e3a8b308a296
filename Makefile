# The two commands of the README: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: train test lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

train: $(VENV)/.installed
	$(PY) train.py $(ARGS)

# One JAX compilation cache per run, shared by the xdist workers and the train.py processes
# the tests start: a program compiled once is loaded, not recompiled (e.g. each resume
# test's second process). Removed when the run ends, so nothing carries between runs.
test: $(VENV)/.installed
	$(PY) -m ruff check poolnets tests bench configs train.py
	cache="$$(mktemp -d)" && trap 'rm -rf "$$cache"' EXIT && \
	JAX_COMPILATION_CACHE_DIR="$$cache" JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
	JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0 $(PY) -m pytest -n 2 -q

lint: $(VENV)/.installed
	$(PY) -m ruff check poolnets tests bench configs train.py

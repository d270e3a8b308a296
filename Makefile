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

test: $(VENV)/.installed
	$(PY) -m ruff check poolnets tests bench configs train.py
	$(PY) -m pytest -n 2 -q

lint: $(VENV)/.installed
	$(PY) -m ruff check poolnets tests bench configs train.py

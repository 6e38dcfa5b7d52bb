# The two commands of the README's quick start; each installs what it needs into .venv first.
#   make demo   fetch the offline sample competition, train on it, write submissions/submission.csv
#   make test   run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

demo: install
	$(BIN)/pipeline fetch --sample
	$(BIN)/pipeline train --epochs 10 --lr 0.02 --milestones 7
	$(BIN)/pipeline predict --score dataset/solution.csv

test: install
	$(BIN)/python -m pytest -q

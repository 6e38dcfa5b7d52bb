# The two commands of the README's quick start; each installs what it needs into .venv first.
#   make demo   fetch the offline sample competition, train on it, write submissions/submission.csv
#   make test   run the test suite
# The smoke subset (pytest -m smoke) at other dependency versions, each in a venv of its own (CI runs both):
#   make test-floors      every dependency at the lowest version pyproject.toml admits (uv's lowest-direct)
#   make test-gpu-image   the versions a GPU machine image ships (constraints-gpu-image.txt), the package
#                         installed without the dependencies the image lacks
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-floors test-gpu-image

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

UV := $(BIN)/uv

$(UV): $(STAMP)
	$(BIN)/python -m pip install --quiet uv
	touch $@

test-floors: $(UV)
	rm -rf .venv-floors && $(PYTHON) -m venv .venv-floors
	$(UV) pip install --quiet --python .venv-floors/bin/python --resolution lowest-direct -e ".[test]"
	$(UV) pip list --python .venv-floors/bin/python
	.venv-floors/bin/python -m pytest -q -m smoke -p no:cacheprovider

test-gpu-image: $(UV)
	rm -rf .venv-gpu-image && $(PYTHON) -m venv .venv-gpu-image
	$(UV) pip install --quiet --python .venv-gpu-image/bin/python -r constraints-gpu-image.txt
	$(UV) pip install --quiet --python .venv-gpu-image/bin/python --no-deps -e .
	$(UV) pip list --python .venv-gpu-image/bin/python
	.venv-gpu-image/bin/python -m pytest -q -m smoke -p no:cacheprovider

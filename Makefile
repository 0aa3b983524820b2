# Everything runs inside .venv/ at the repository root, created from nothing by `make setup`.
# torch is installed as the CPU wheel torch==2.13.0 in the *same* pip command as everything
# that depends on it, so pip never pulls the multi-GB CUDA build (GPU users: see README).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.paretopo-installed

.PHONY: setup demo study test test-all bench lint colab-zip clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)" -e ".[apps,notebooks,dev]"
	touch $(STAMP)

demo: setup            ## the main job: the CPU demo on the embedded default
	$(VENV)/bin/paretopo demo

study: setup           ## every method and ablation, 3 seeds, both testbeds (about 2 h on 2 cores): docs/results.md
	$(VENV)/bin/paretopo study --test-samples 0 --docs docs/results.md
	$(VENV)/bin/paretopo study --task lookup --out results/study_lookup --docs docs/results.md

test: setup            ## the default test run (slow and GPU tests skipped)
	$(PY) -m pytest -q

test-all: setup        ## everything, slow tests included (GPU tests still need CUDA)
	$(PY) -m pytest -q -m "not gpu"

bench: setup
	$(PY) benchmarks/bench_core.py

lint: setup
	$(VENV)/bin/ruff check paretopo tests benchmarks apps

colab-zip:             ## dist/paretopo.zip: the project and its data/ (no .venv/, no runs/), to upload next to a notebook in Colab
	$(PYTHON) scripts/colab_zip.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info

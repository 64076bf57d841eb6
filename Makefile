# gep_raster developer commands. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
export GEP_SHARED_DATA ?= $(abspath ../shared/data)

.PHONY: help setup demo test test-fast gura willamette validate sample-tiles bench clean

help:  ## list the commands
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install gep_raster with pinned dependencies (requirements.lock)

demo: $(STAMP)  ## run the main job on the embedded sample -> out/sample (rasters, tables, figures, manifest.json)
	$(BIN)/gep run pipelines/sample.yaml

test: $(STAMP)  ## run the whole test suite (unit, equivalence, real data in $GEP_SHARED_DATA, notebook)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)  ## tests without the end-to-end runs
	$(BIN)/python -m pytest -q -m "not slow"

validate: $(STAMP)  ## validate every pipeline config
	$(BIN)/gep validate pipelines/sample.yaml
	$(BIN)/gep validate pipelines/gura.yaml
	$(BIN)/gep validate pipelines/willamette.yaml

gura: $(STAMP)  ## run the four services on the real Gura (Kenya) data -> out/gura
	$(BIN)/gep run pipelines/gura.yaml

willamette: $(STAMP)  ## run carbon and air purification on the real Willamette (Oregon) data -> out/willamette
	$(BIN)/gep run pipelines/willamette.yaml

sample-tiles: $(STAMP)  ## regenerate sample_tiles/data with the deterministic generator
	$(BIN)/python sample_tiles/make_sample.py --out sample_tiles/data

bench: $(STAMP)  ## benchmarks (not part of the tests): writes bench/results/latest.json
	$(BIN)/python bench/run_bench.py

clean:  ## remove outputs (keeps .venv)
	rm -rf out bench/results/latest.json

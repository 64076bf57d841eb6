# gep_raster developer commands. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
export GEP_SHARED_DATA ?= $(abspath ../shared/data)

.PHONY: help setup demo test test-fast gura willamette validate sample-tiles sample-stac bench clean \
        sensitivity change-demo offset-demo vep-demo sample-years assess-demo report-demo serve-demo

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
	$(BIN)/gep validate pipelines/willamette_future.yaml
	$(BIN)/gep validate pipelines/sample_development.yaml
	$(BIN)/gep validate pipelines/sample_restoration.yaml
	$(BIN)/gep validate pipelines/sample_stac.yaml
	for y in 2024 2025 2026; do $(BIN)/gep validate pipelines/sample_years/sample_$$y.yaml || exit $$?; done

gura: $(STAMP)  ## run seven regulating services + EPV/ECV on the real Gura (Kenya) data -> out/gura
	$(BIN)/gep run pipelines/gura.yaml

willamette: $(STAMP)  ## run carbon, oxygen, air and water purification on the real Willamette (Oregon) data -> out/willamette
	$(BIN)/gep run pipelines/willamette.yaml

sensitivity: $(STAMP)  ## low/central/high accounts and tornado for the sample and Gura -> out/*/sensitivity
	$(BIN)/gep sensitivity pipelines/sample.yaml
	$(BIN)/gep sensitivity pipelines/gura.yaml

change-demo: $(STAMP)  ## Willamette current vs future land cover -> out/willamette_change
	$(BIN)/gep run pipelines/willamette.yaml
	$(BIN)/gep run pipelines/willamette_future.yaml
	$(BIN)/gep compare out/willamette out/willamette_future -o out/willamette_change

offset-demo: $(STAMP)  ## GEP-R offset of a development parcel on the sample -> out/sample_offset
	$(BIN)/gep run pipelines/sample.yaml
	$(BIN)/gep run pipelines/sample_development.yaml
	$(BIN)/gep run pipelines/sample_restoration.yaml
	$(BIN)/gep offset --baseline out/sample --scenario out/sample_development \
	  --parcel pipelines/data/sample_development_parcel.gpkg --restoration out/sample_restoration \
	  --candidates pipelines/data/sample_candidate_parcels.gpkg --id-field cand_id --name-field cand_name \
	  --offset-ratio 1.0 --ratio-source "illustrative 1:1, not a standard ratio" -o out/sample_offset

vep-demo: $(STAMP)  ## VEP accounts of the sample's special units with a 20-year projection -> out/sample_vep
	$(BIN)/gep run pipelines/sample.yaml
	$(BIN)/gep vep out/sample --layer special_units --years 20 --growth 0.02 --discount 0.045 -o out/sample_vep

assess-demo: $(STAMP)  ## three sample accounting years -> series at 2024 prices, assessment, fund allocation, carbon sink -> out/sample_assess
	for y in 2024 2025 2026; do $(BIN)/gep run pipelines/sample_years/sample_$$y.yaml || exit $$?; done
	$(BIN)/gep series out/sample_years/2024 out/sample_years/2025 out/sample_years/2026 --base-year 2024 \
	  -o out/sample_assess/series
	$(BIN)/gep assess out/sample_assess/series --targets pipelines/sample_years/targets.yaml -o out/sample_assess/assessment
	$(BIN)/gep allocate out/sample_assess/series --layer township --fund 100000000 \
	  --rule pipelines/sample_years/allocation_rule.yaml --statistics pipelines/sample_years/development_statistics.csv \
	  -o out/sample_assess/allocation
	$(BIN)/gep carbon-sink out/sample_years/2024 out/sample_years/2025 out/sample_years/2026 \
	  --parcels sample_tiles/data/polygons/special_units.gpkg --id-field unit_id --name-field unit_name \
	  -o out/sample_assess/carbon_sink

sample-years: $(STAMP)  ## regenerate the three sample accounting years pipelines/sample_years (make assess-demo)
	$(BIN)/python pipelines/make_sample_years.py

sample-tiles: $(STAMP)  ## regenerate sample_tiles/data with the deterministic generator
	$(BIN)/python sample_tiles/make_sample.py --out sample_tiles/data
	$(BIN)/python pipelines/make_sample_stac.py -o sample_tiles/stac

sample-stac: $(STAMP)  ## regenerate the sample's static STAC catalogue sample_tiles/stac (pipelines/sample_stac.yaml)
	$(BIN)/python pipelines/make_sample_stac.py -o sample_tiles/stac

bench: $(STAMP)  ## province-scale benchmarks, all cases up to 32k^2 (long: about 45 min) -> bench/results/latest.json
	$(BIN)/python bench/run_bench.py

report-demo: $(STAMP)  ## the sample run and its accounting report in English and Chinese -> out/sample/report (HTML; PDF when Chromium is installed)
	$(BIN)/gep run pipelines/sample.yaml
	$(BIN)/gep report out/sample --lang zh

serve-demo: $(STAMP)  ## the sample run served as a web map with parcel queries on http://127.0.0.1:8000 (Ctrl-C stops)
	$(BIN)/gep run pipelines/sample.yaml
	$(BIN)/gep serve out/sample

.PHONY: bench-parcel
bench-parcel: $(STAMP)  ## parcel query of gep serve: a 10 km2 parcel on a 16384^2 synthetic run, median of 20 queries (about 3 min) -> bench/results/parcel.json
	$(BIN)/python bench/bench_parcel.py

.PHONY: bench-invest
bench-invest: $(STAMP)  ## InVEST 3.20.2 vs gep run, same 3 services and inputs, 2000^2 and 4000^2, 3 alternated pairs (needs the peer: ../shared/tools/invest-peer) -> bench/results/invest.json
	$(BIN)/python bench/bench_invest.py

.PHONY: bench-quick
bench-quick: $(STAMP)  ## small benchmarks only (sample, synthetic 2048^2, zonal) -> bench/results/latest.json
	$(BIN)/python bench/run_bench.py --cases quick

.PHONY: bench-first-run
bench-first-run: $(STAMP)  ## first-run cost of a fresh install: wheel into new venvs, cold vs warm gep run of the sample, with and without gep warmup, read-only site-packages (about 5 min) -> bench/results/first_run.json
	$(BIN)/python bench/bench_first_run.py

clean:  ## remove outputs and the Python/numba caches of the package (keeps .venv)
	rm -rf out bench/results/latest.json
	find gep_raster -name __pycache__ -type d -prune -exec rm -rf {} +

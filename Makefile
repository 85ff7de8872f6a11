# mpraster: everything runs in a project-local virtual environment, one per Python version
# (.venv-3.11, .venv-3.13, ...): `make test PYTHON=python3.13` builds and tests on 3.13.
PYTHON ?= python3
PYVER  := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifeq ($(PYVER),)
$(error PYTHON=$(PYTHON) is not a Python interpreter that runs here)
endif
VENV   := .venv-$(PYVER)
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# Reinstall (recompiling ext/*.pyx) whenever the build inputs change.
$(STAMP): $(BIN)/python pyproject.toml setup.py $(wildcard ext/*.pyx ext/*.pxd)
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python scripts/demo.py

test: install
	$(BIN)/python -c 'import sys, rasterio; print(f"mpraster tests: Python {sys.version.split()[0]}, rasterio {rasterio.__version__}, GDAL {rasterio.__gdal_version__}")'
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m 'not slow'

# The peers (rio-mucho, dask, rioxarray, scipy, xarray-spatial, numba) and matplotlib come
# with the bench extra; bench_terrain.py also runs /usr/bin/gdaldem (Debian's gdal-bin) when
# it is there.
bench: install
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python scripts/bench.py --write
	$(BIN)/python scripts/bench_kernels.py --size 6144 --write
	$(BIN)/python scripts/bench_focal.py --runs 21 --write
	$(BIN)/python scripts/bench_overhead.py --write
	$(BIN)/python scripts/bench_startup.py --write
	$(BIN)/python scripts/bench_writer.py --size 8192 --write
	$(BIN)/python scripts/bench_terrain.py --write
	$(BIN)/python scripts/bench_stats.py --runs 5 --write
	$(BIN)/python scripts/bench_placement.py --write

lint: install
	$(BIN)/python -m pip install -q ruff
	$(BIN)/ruff check mpraster tests scripts setup.py
	$(BIN)/ruff format --check mpraster tests scripts setup.py

format:
	$(BIN)/ruff format mpraster tests scripts setup.py

clean:
	rm -rf build dist *.egg-info mpraster/*.so ext/*.c ext/*.html out .pytest_cache

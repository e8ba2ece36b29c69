# make run: install into .venv and run the default study on the built-in synthetic mammography domain
# make test: install into .venv and run the test suite, then the model-training tests under MKL_CBWR=COMPATIBLE
# make validate: the engine's end-to-end known-answer check with real training (about 4 minutes more)
# make soak: a 60-recipe study on the local Ray while a trial worker is killed every 10 s (bench/soak.py), not in make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest-xdist processes for make test's first pass: most tests wait on one single-threaded trial subprocess
# (the second pass is short and shares one data and teacher cache when it runs in one process)
TEST_WORKERS ?= 2

.PHONY: install run test validate soak bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/study run search_spaces/ddsm.yaml --replace

# then the tests that train a model once more on MKL's CPU-independent code path, so that a threshold which
# only holds for this CPU's kernels fails here too (exit 5, "no tests collected", is not a failure)
test: $(STAMP) browser
	$(BIN)/ruff check study mmpkd_core reports tests bench
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not validation"
	MKL_CBWR=COMPATIBLE $(BIN)/python -m pytest -q -m "trains and not slow" || [ $$? -eq 5 ]

validate: $(STAMP)
	$(BIN)/python -m pytest -q -m validation

soak: $(STAMP)
	$(BIN)/python bench/soak.py

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# Debian's Chromium for the report's browser test (skipped, with a reason, where it cannot be installed)
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "note: chromium could not be installed; the browser tests will be skipped"

clean:
	rm -rf .mmpkd_cache reports/*.html studies.duckdb studies.duckdb.snapshot studies.optuna.log

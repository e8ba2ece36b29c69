# make run: install into .venv and run the default study on the built-in synthetic mammography domain
# make test: install into .venv and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/study run search_spaces/ddsm.yaml --replace

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf .mmpkd_cache reports/*.html studies.duckdb

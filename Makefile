# Two commands on a fresh machine: `make demo` and `make test`. Everything else builds on them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
LAB_PORT ?= 8888
USER_ID  ?= $(shell id -u)
# The oldest Python the package supports (pyproject.toml: requires-python).
MIN_PYTHON := 3.11
PYTHON_OK := import sys; sys.exit(sys.version_info < (3, 11))

.PHONY: setup check-python demo test lab lab-command serve lint clean

setup: $(STAMP)

## Refuse an unsupported Python before anything is installed, and say what to do.
check-python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "error: '$(PYTHON)' not found. Install Python $(MIN_PYTHON) or newer, or run" \
	       "'make PYTHON=/path/to/python3.12 ...'."; exit 1; }
	@$(PYTHON) -c '$(PYTHON_OK)' || { \
	  echo "error: this project needs Python $(MIN_PYTHON) or newer;" \
	       "'$(PYTHON)' is $$($(PYTHON) --version 2>&1)."; \
	  echo "       Install a newer Python and run e.g. 'make PYTHON=python3.12 demo'" \
	       "(add 'clean' first if an earlier attempt left a .venv behind)."; exit 1; }

# A .venv left by an interrupted install or by another Python is rebuilt from scratch
# (--clear), never patched: a half-built environment keeps failing in confusing ways.
$(STAMP): requirements.txt pyproject.toml | check-python
	@if ! $(BIN)/python -c '$(PYTHON_OK)' 2>/dev/null; then \
	  echo ">> creating $(VENV) with $$($(PYTHON) --version)"; \
	  $(PYTHON) -m venv --clear $(VENV); fi
	@echo ">> installing the pinned environment (requirements.txt): a few minutes the first time"
	$(BIN)/python -m pip install --upgrade pip --progress-bar on
	$(BIN)/python -m pip install -r requirements.txt --progress-bar on
	$(BIN)/python -m pip install --no-deps -e . --progress-bar on
	@echo ">> environment ready in $(VENV)"
	touch $(STAMP)

## Seed the example tenants into an embedded SQLite database and print a short tour.
demo: setup
	$(BIN)/python -m m11_tenant demo

## Every test: the package suites, the notebooks under nbval (strict), then lint.
## Every stage runs even if an earlier one failed; make fails at the end, naming the stages.
test: setup
	@failed=""; \
	echo ">> stage 1/3: package tests (pytest)"; \
	$(BIN)/python -m pytest -q || failed="$$failed pytest"; \
	echo ">> stage 2/3: notebooks (nbval, strict)"; \
	$(BIN)/python -m pytest -q --nbval --nbval-current-env \
	    --nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks/ || failed="$$failed notebooks"; \
	echo ">> stage 3/3: lint (ruff)"; \
	$(BIN)/python -m ruff check m11_tenant tests bench || failed="$$failed lint"; \
	if [ -n "$$failed" ]; then echo ">> FAILED stage(s):$$failed"; exit 1; fi; \
	echo ">> all stages passed"

## Open the workbook: JupyterLab serving the repository root (notebooks/, data/, the
## package), on notebooks/00_index.ipynb. Works as root too (containers).
LAB_COMMAND = $(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" \
    --LabApp.default_url=/lab/tree/notebooks/00_index.ipynb \
    --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
    $(if $(filter 0,$(USER_ID)),--allow-root)
lab: setup
	$(LAB_COMMAND)

# The exact command `make lab` runs (tests/e2e/test_lab_browser.py starts the same one).
lab-command:
	@echo '$(LAB_COMMAND)'

## Serve the management API (seeds the example tenants on first start). Without M11_ADMIN_KEY,
## the admin key is generated once and kept in .m11/admin_key (mode 600).
serve: setup
	$(BIN)/python -m m11_tenant seed
	$(BIN)/python -m m11_tenant serve --host $(HOST) --port $(PORT) --admin-key-file .m11/admin_key

lint: setup
	$(BIN)/python -m ruff check m11_tenant tests bench

clean:
	rm -rf $(VENV) .m11 m11_tenant.db m11_tenant.db-wal m11_tenant.db-shm .pytest_cache

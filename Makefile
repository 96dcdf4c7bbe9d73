# Two commands on a fresh machine: `make demo` and `make test`. Everything else builds on them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: setup demo test test-fast lab serve lint bench clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## Seed the example tenants into an embedded SQLite database and print a short tour.
demo: setup
	$(BIN)/python -m m11_tenant demo

## Every test: the package suites, the notebooks under nbval (strict), then lint.
test: setup
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q --nbval --nbval-current-env \
	    --nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks/
	$(BIN)/python -m ruff check m11_tenant tests bench

## Open the workbook.
lab: setup
	$(BIN)/jupyter lab notebooks/00_index.ipynb

## Serve the management API (seeds the example tenants on first start). Without M11_ADMIN_KEY,
## the admin key is generated once and kept in .m11/admin_key (mode 600).
serve: setup
	$(BIN)/python -m m11_tenant seed
	$(BIN)/python -m m11_tenant serve --host $(HOST) --port $(PORT) --admin-key-file .m11/admin_key

lint: setup
	$(BIN)/python -m ruff check m11_tenant tests bench

clean:
	rm -rf $(VENV) .m11 m11_tenant.db m11_tenant.db-wal m11_tenant.db-shm .pytest_cache

# One entry point each: make run, make test, make lint, make bench.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: install run test lint format lock clean

$(VENV)/.installed: requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

install: $(VENV)/.installed

## make run: the whole app (web, worker, beat) on SQLite and the filesystem broker, or on
## PostgreSQL/Redis when DATABASE_URL / CELERY_BROKER_URL are set. Ctrl-C stops everything.
run: install
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py seed_demo
	$(PY) manage.py demo_info --port $(PORT)
	WEB_PORT=$(PORT) exec $(VENV)/bin/honcho -f Procfile.dev start

## make test: the whole suite (PostgreSQL and Redis when DATABASE_URL / CELERY_BROKER_URL
## point at them, SQLite and the filesystem broker otherwise).
test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

lock:
	$(PY) -m pip freeze --exclude-editable > requirements.lock

clean:
	rm -rf var .pytest_cache

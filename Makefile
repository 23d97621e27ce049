# One entry point each: make run, make test, make lint, make bench.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: install run test lint format lock clean typecheck security check-deploy coverage loadtest ci

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

## make typecheck: mypy with django-stubs and djangorestframework-stubs (config: pyproject.toml).
typecheck: install
	$(VENV)/bin/mypy

## make security: bandit on the packages (config: pyproject.toml).
security: install
	$(VENV)/bin/bandit -c pyproject.toml -r bookings sagas config ops -q

## make check-deploy: Django's deployment checks with the production settings; any warning fails.
check-deploy: install
	DJANGO_SETTINGS_MODULE=config.settings.production \
	DJANGO_SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))') \
	DJANGO_ALLOWED_HOSTS=bookings.example.com \
	DATABASE_URL=$${DATABASE_URL:-postgres://db.internal/bookings} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-redis://redis.internal:6379/0} \
	CACHE_URL=$${CACHE_URL:-redis://redis.internal:6379/1} \
	$(PY) manage.py check --deploy --fail-level WARNING

## make coverage: the whole suite under coverage (worker subprocesses and their pool too), then
## the branch coverage of bookings and sagas, which must be at least 90 % (pyproject.toml).
coverage: install
	rm -rf var/coverage && mkdir -p var/coverage
	$(VENV)/bin/coverage run -m pytest
	$(VENV)/bin/coverage combine -q
	$(VENV)/bin/coverage report

## make loadtest: one minute of locust against gunicorn and two workers (needs DATABASE_URL,
## CELERY_BROKER_URL; use a database of its own). LOAD_P95_MS is the bound CI holds: measured
## p95 27 ms (10 clients, 19 req/s, 0 errors, 2-core machine shared with other jobs); 250 ms
## leaves room for a busy CI machine and still fails on a real regression.
LOAD_P95_MS ?= 250
LOAD_USERS ?= 10
loadtest: install
	$(PY) loadtest/run.py --users $(LOAD_USERS) --duration 60s --p95-ms $(LOAD_P95_MS)

## make ci: every gate, as CI runs them (.ci/run).
ci:
	.ci/run

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

lock:
	$(PY) -m pip freeze --exclude-editable > requirements.lock

clean:
	rm -rf var .pytest_cache

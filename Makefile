# One entry point each: make run, make test, make lint, make bench.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# The demo's webhook receiver (make run): the port after the web's unless given.
WEBHOOK_RECEIVER_PORT ?= $$(( $(PORT) + 1 ))
# make run listens on the loopback interface only; HOST=0.0.0.0 to reach it from elsewhere.
HOST ?= 127.0.0.1
# Every command of make run asks for the local settings itself (the processes fail closed to
# the production settings without DJANGO_SETTINGS_MODULE). Not exported to the whole Makefile:
# pytest-django would let it override the test settings.
LOCAL := DJANGO_SETTINGS_MODULE=config.settings.local

.PHONY: install install-run run smoke test lint format lock clean typecheck security check-deploy coverage loadtest ci chaos bench diagram

# Three locks (requirements/, `make lock`), each the whole closure of its set with every hash,
# installed with --require-hashes: runtime.txt is what the web, worker and beat processes need
# (a production install), dev-server.txt adds make run's process manager, dev.txt adds the
# tests and tools. make run installs dev-server.txt only; make test, lint, typecheck... dev.txt.
# PYTHON=python3.13 VENV=.venv-3.13 to build another Python's virtualenv beside the default one.
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check --require-hashes

# Every install upgrades the virtualenv's installer first, from requirements/installer.txt
# (hash-checked too; a no-op once done).
define venv_install
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --no-deps -r requirements/installer.txt
	$(PIP_INSTALL) -r $(1)
endef

$(VENV)/.installed-run: requirements/dev-server.txt requirements/installer.txt
	$(call venv_install,requirements/dev-server.txt)
	touch $@

$(VENV)/.installed: requirements/dev.txt requirements/installer.txt
	$(call venv_install,requirements/dev.txt)
	touch $@ $(VENV)/.installed-run

## make install-run: what make run needs (runtime + dev-server); make install: everything.
install-run: $(VENV)/.installed-run

install: $(VENV)/.installed

## make run: the whole app (web, worker, beat) on SQLite and the filesystem broker, or on
## PostgreSQL/Redis (or RabbitMQ) when DATABASE_URL / CELERY_BROKER_URL are set, on
## http://127.0.0.1:$(PORT) (HOST=0.0.0.0 for every interface). Ctrl-C stops everything.
# The banner (demo_info) waits in the background until /health/ answers, so that it comes after
# the processes' start-up output instead of scrolling away under the Celery banner. Web, worker
# and beat share one prometheus_client multiprocess directory, emptied at each start: /metrics
# then shows the worker's saga and provider metrics too, not only the web process's.
RUN_METRICS = $${DATA_DIR:-var}/metrics/run
run: install-run
	mkdir -p "$${DATA_DIR:-var}"
	$(LOCAL) $(PY) manage.py database_ready
	$(LOCAL) $(PY) manage.py migrate --noinput -v0
	$(LOCAL) $(PY) manage.py seed_demo
	rm -rf "$(RUN_METRICS)" && mkdir -p "$(RUN_METRICS)"
	$(LOCAL) $(PY) manage.py demo_info --port $(PORT) --after-start 120 --parent $$$$ & \
	$(LOCAL) WEB_HOST=$(HOST) WEB_PORT=$(PORT) WEBHOOK_RECEIVER_PORT=$(WEBHOOK_RECEIVER_PORT) \
	  PROMETHEUS_MULTIPROC_DIR="$(RUN_METRICS)" \
	  exec $(VENV)/bin/honcho -f Procfile.dev start

## make smoke: what a new user does, from a fresh clone of this repository's HEAD: make run on
## SQLite + the filesystem broker, then PostgreSQL + Redis (SMOKE_BACKENDS to choose; rabbitmq
## too), the banner's curl line until its booking completes, 50 concurrent creates with no 5xx,
## and Ctrl-C leaving no process behind (tools/smoke.py; CI runs it).
SMOKE_BACKENDS ?= sqlite,redis
smoke: install
	$(PY) tools/smoke.py --backends $(SMOKE_BACKENDS)

## make test: the whole suite (PostgreSQL and Redis when DATABASE_URL / CELERY_BROKER_URL
## point at them, SQLite and the filesystem broker otherwise). COVERAGE=1 runs it under coverage
## (worker processes and their pool too) and fails below 90 % branch coverage of bookings and
## sagas (pyproject.toml); CI does that.
test: install
ifdef COVERAGE
	rm -rf var/coverage && mkdir -p var/coverage
	$(VENV)/bin/coverage run -m pytest
	$(VENV)/bin/coverage combine -q
	$(VENV)/bin/coverage report
else
	$(PY) -m pytest
endif

## make diagram: rewrite README.md's Mermaid state diagram from the booking FSM (a unit test,
## tests/commands/test_state_diagram.py, fails while the two disagree).
diagram: install-run
	$(LOCAL) $(PY) manage.py graph_booking_states --write-readme

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
	STRIPE_API_KEY=$${STRIPE_API_KEY:-sk_test_check_deploy} \
	$(PY) manage.py check --deploy --fail-level WARNING

## make coverage: the same as COVERAGE=1 make test.
coverage:
	$(MAKE) test COVERAGE=1

## make loadtest: one minute of locust against gunicorn and two workers (needs DATABASE_URL,
## CELERY_BROKER_URL; use a database of its own). LOAD_P95_MS is the bound CI holds: measured
## p95 27 ms (10 clients, 19 req/s, 0 errors, 2-core machine shared with other jobs); 250 ms
## leaves room for a busy CI machine and still fails on a real regression.
LOAD_P95_MS ?= 250
LOAD_USERS ?= 10
loadtest: install
	$(PY) loadtest/run.py --users $(LOAD_USERS) --duration 60s --p95-ms $(LOAD_P95_MS)

## make bench: sagas/s, latency, writes, messages and CPU per saga with real workers on
## PostgreSQL and Redis (127.0.0.1), the API under locust, the admin list with 100,000 bookings,
## a sweep over 1,000,000 sagas, and the peers of ../shared/peers in the same sitting (three
## rounds interleaved with ours). About 12 minutes; writes bench/results/<date>.json and .png.
## BENCH_ONLY=saga,rate for a subset.
BENCH_ONLY ?=
bench: install
	$(PY) bench/run.py $(if $(BENCH_ONLY),--only $(BENCH_ONLY),)

## make chaos: minutes of mixed traffic with random worker kills and broker and database
## restarts, on throwaway servers of its own (a redis-server and an initdb cluster on free ports;
## CHAOS_BROKER=rabbitmq adds a RabbitMQ node): the machine's servers are never touched. Prints
## one table and fails when any invariant breaks. Not part of CI (minutes long).
CHAOS_DURATION ?= 300
CHAOS_SAGAS ?= 2000
CHAOS_BROKER ?= redis
chaos: install
	$(PY) tools/chaos.py --duration $(CHAOS_DURATION) --sagas $(CHAOS_SAGAS) --broker $(CHAOS_BROKER) --json var/chaos-$$(date +%F).json

## make ci: every gate, as CI runs them (.ci/run).
ci:
	.ci/run

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## make lock: compile requirements/*.txt from pyproject.toml (pip-compile, pip's own index and
## configuration), keeping every pin that still satisfies pyproject.toml; LOCK_UPGRADE=1 moves
## each to the newest release. dev-server.txt is constrained by runtime.txt and dev.txt by
## dev-server.txt, so one package has one version in all three. The locks must install on
## Python 3.11, 3.12 and 3.13 (the ci stage "Python 3.13" installs dev.txt there).
LOCK_UPGRADE ?=
PIP_COMPILE := $(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links $(if $(LOCK_UPGRADE),--upgrade,)
lock: install
	$(PIP_COMPILE) -o requirements/runtime.txt pyproject.toml
	$(PIP_COMPILE) -c requirements/runtime.txt --extra dev-server \
		-o requirements/dev-server.txt pyproject.toml
	$(PIP_COMPILE) -c requirements/dev-server.txt --extra dev-server --extra dev \
		-o requirements/dev.txt pyproject.toml
	$(PIP_COMPILE) -c requirements/dev.txt -o requirements/installer.txt requirements/installer.in

clean:
	rm -rf var .pytest_cache

# `make run`: set up everything and serve the demo on http://127.0.0.1:5000
# `make test`: set up everything (Chromium too) and run every test: on SQLite, the tests
#              of backend-specific behaviour on PostgreSQL (alongside), the browser tests once
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask
HOST ?= 127.0.0.1
PORT ?= 5000
export FLASK_APP := app.py
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# pytest-xdist workers (each builds its own template database, on PostgreSQL in its own
# throwaway cluster; in the browser suite each runs its own Chromium)
WORKERS ?= 2
# pytest keeps the test modules (and its plugins' packages) it rewrote for assertions as
# bytecode in __pycache__, also where PYTHONDONTWRITEBYTECODE is set: otherwise each of the
# nine pytest processes of `make test` rewrites ~300 modules again (~10 s of CPU each).
PYTEST := PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -q -p no:cacheprovider

.PHONY: run test test-sqlite test-postgresql test-browser install install-dev db system-deps \
        chromium postgres node-deps bench clean

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# test and benchmark tools (pytest, Playwright, schemathesis, ...): not needed by `make run`
$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# the scanner (consent/scanner) drives Debian's Chromium through Playwright
install: $(VENV)/.installed chromium

install-dev: $(VENV)/.installed-dev

db: install
	$(FLASK) consent init-db
	$(FLASK) consent seed-demo --origin http://$(HOST):$(PORT) --origin http://localhost:$(PORT)

run: db
	@echo "Demo page: http://$(HOST):$(PORT)/   API docs: http://$(HOST):$(PORT)/api/v1/docs"
	$(VENV)/bin/gunicorn -c gunicorn.conf.py -b $(HOST):$(PORT) -w 2 -k gthread --threads 4 --access-logfile - app:app

chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql; }

node-deps: package.json
	@[ -d node_modules/axe-core ] && [ -d node_modules/@transmute/rfc9162 ] && [ -d node_modules/terser ] && [ -d node_modules/@iabgpp/cmpapi ] || npm install --no-audit --no-fund --silent

system-deps: chromium postgres node-deps

# Every suite runs even if one fails; the exit status says whether all passed. The
# PostgreSQL suite runs alongside the other two (it mostly waits on the database and on
# its servers; its output is printed when it is done), SQLite then the browser suite.
test: install-dev system-deps
	@# Bytecode once for every interpreter the tests start (servers, CLI runs), also where
	@# PYTHONDONTWRITEBYTECODE keeps each of them from writing its own.
	@$(VENV)/bin/python -m compileall -q -j 0 consent tests app.py >/dev/null
	@status=0; pglog=$$(mktemp); \
	$(MAKE) --no-print-directory test-postgresql >$$pglog 2>&1 & pg=$$!; \
	$(MAKE) --no-print-directory test-sqlite || status=1; \
	$(MAKE) --no-print-directory test-browser || status=1; \
	wait $$pg || status=1; \
	echo "=== make test-postgresql (ran alongside) ==="; cat $$pglog; rm -f $$pglog; \
	exit $$status

# Every test but the browser ones, on SQLite (the database-independent ones run only here).
test-sqlite: install-dev
	CONSENT_TEST_DB=sqlite $(PYTEST) -n $(WORKERS) -m "not browser"

# The tests of behaviour that differs between the backends (marker `backend`: the modules
# listed in tests/conftest.py and tests marked so; rule in docs/testing.md), on PostgreSQL.
test-postgresql: install-dev postgres
	CONSENT_TEST_DB=postgresql $(PYTEST) -n $(WORKERS) -m backend

# The widget and end-to-end tests in Chromium, once (on SQLite unless CONSENT_TEST_DB says
# otherwise): they test the widget and the pages, whose server side the runs above cover
# on both backends.
test-browser: install-dev chromium node-deps
	$(PYTEST) -n $(WORKERS) -m browser

# Every benchmark in turn (each prints its figures; wrk comes from Debian).
bench: install-dev chromium node-deps
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	-$(PY) bench/write_bench.py --rounds 3
	-$(PY) bench/write_breakdown.py
	-$(PY) bench/widget_bench.py
	-$(PY) bench/export_bench.py
	-$(PY) bench/webhook_bench.py

clean:
	rm -rf $(VENV) instance node_modules

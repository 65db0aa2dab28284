# `make run`: set up everything and serve the demo on http://127.0.0.1:5000
# `make test`: set up everything (Chromium too) and run every test, on SQLite and PostgreSQL
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask
HOST ?= 127.0.0.1
PORT ?= 5000
export FLASK_APP := app.py
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-sqlite test-postgresql install db system-deps chromium postgres node-deps bench clean

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# Test-only tools (the gateways' and Standard Webhooks' own libraries, JSON Schema).
$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

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
	@[ -d node_modules/axe-core ] && [ -d node_modules/@transmute/rfc9162 ] || npm install --no-audit --no-fund --silent

system-deps: chromium postgres node-deps

test: install $(VENV)/.installed-dev system-deps test-sqlite test-postgresql

test-sqlite: install $(VENV)/.installed-dev
	CONSENT_TEST_DB=sqlite $(PY) -m pytest -q -p no:cacheprovider

test-postgresql: install $(VENV)/.installed-dev
	CONSENT_TEST_DB=postgresql $(PY) -m pytest -q -p no:cacheprovider

# Every benchmark in turn (each prints its figures; wrk comes from Debian).
bench: install chromium node-deps
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	-$(PY) bench/write_bench.py --rounds 3
	-$(PY) bench/write_breakdown.py
	-$(PY) bench/widget_bench.py
	-$(PY) bench/export_bench.py
	-$(PY) bench/webhook_bench.py

clean:
	rm -rf $(VENV) instance node_modules

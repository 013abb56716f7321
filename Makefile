# aevon-deploy: `make demo` (the main job) and `make test` (set-up plus the whole suite). Everything installs itself.
SHELL := /bin/bash
PY := .venv/bin/python
export PREFECT_SERVER_ANALYTICS_ENABLED := false
PREFECT_PORT ?= 4200
PREFECT_DB ?= postgresql+asyncpg://postgres@127.0.0.1:5432/aevon_prefect
EVIDENCE_PORT ?= 4201

.PHONY: setup python prisma postgres chromium wapiti prometheus registry test unit lint demo bench chaos serve stop clean

setup: python prisma postgres chromium wapiti prometheus registry

python:
	@bash scripts/setup-python.sh

prisma:
	@bash scripts/setup-prisma.sh

postgres:
	@bash scripts/ensure-postgres.sh

chromium:
	@bash scripts/ensure-chromium.sh

registry:
	@bash scripts/ensure-registry.sh

wapiti:
	@bash scripts/setup-wapiti.sh

prometheus:
	@bash scripts/ensure-prometheus.sh

lint: python
	$(PY) -m ruff check .
	$(PY) -m mypy

test: setup lint
	$(PY) -m pytest -q -p no:cacheprovider --durations=25

unit: python
	$(PY) -m pytest -q tests/unit

demo: setup
	$(PY) -m flows.server start --port $(PREFECT_PORT) --db $(PREFECT_DB)
	$(PY) -m flows.evidence start --port $(EVIDENCE_PORT)
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api AEVON_EVIDENCE_URL=http://127.0.0.1:$(EVIDENCE_PORT) \
		$(PY) scripts/demo.py

bench: setup
	$(PY) bench/run.py

chaos: setup
	$(PY) bench/chaos.py

serve: setup
	$(PY) -m flows.serve start --port $(PREFECT_PORT) --db $(PREFECT_DB) --evidence-port $(EVIDENCE_PORT)

stop:
	-$(PY) scripts/demo.py --stop
	-$(PY) -m flows.serve stop --port $(PREFECT_PORT)

clean: stop
	rm -rf .aevon

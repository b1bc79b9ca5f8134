# Tollgate: `make run` starts the whole local stack, `make test` runs every check CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(VENV)/bin
# pytest-xdist workers; the suite is built for it (free ports, private Redis dbs, per-session PG databases).
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=
# Benchmarks under bench/ that `make bench` runs (each needs `make run` going in another terminal).
BENCHES ?= $(basename $(notdir $(wildcard bench/push_to_verdict.py)))

.PHONY: help bootstrap run test lint pytest bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

bootstrap: ## install system packages, the venv and pinned requirements (idempotent)
	@scripts/bootstrap.sh

run: bootstrap ## start Redis (if needed), registry, web and worker on this machine; Ctrl-C stops them
	@$(BIN)/python scripts/run_stack.py

test: bootstrap ## lint, type-check and the whole pytest suite (unit + functional) against real services
	@scripts/test_services.sh
	@status=0; \
	$(MAKE) --no-print-directory lint || status=1; \
	$(MAKE) --no-print-directory pytest || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED (see above)" >&2; fi; \
	exit $$status

lint: ## ruff and mypy (strict on service, workers, rules)
	@status=0; \
	echo "+ ruff check ."; $(BIN)/ruff check . || status=1; \
	echo "+ mypy"; $(BIN)/mypy || status=1; \
	exit $$status

pytest: ## the pytest suite alone; exit 5 (no tests collected) counts as a failure
	@echo "+ pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)"; \
	$(BIN)/pytest -p no:cacheprovider -n $(PYTEST_WORKERS) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make pytest: no tests were collected; that is a failure" >&2; exit 1; fi; \
	exit $$rc

bench: bootstrap ## run the benchmarks in bench/ against a running `make run` stack
	@if [ -z "$(BENCHES)" ]; then echo "make bench: no benchmarks in bench/ yet"; exit 0; fi; \
	for b in $(BENCHES); do echo "+ python -m bench.$$b"; $(BIN)/python -m bench.$$b || exit 1; done

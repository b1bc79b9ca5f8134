# Tollgate: `make run` starts the whole local stack, `make test` runs every check CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(VENV)/bin
# pytest-xdist workers; the suite is built for it (free ports, private Redis dbs, per-session PG databases).
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=
# Benchmarks under bench/ that `make bench` runs on their own (the scan ones build and cache a real Debian image;
# pages seeds its own store and Redis) ...
BENCHES ?= gzip_engines scan_throughput pages
# ... and those that need a `make run` stack answering at BENCH_WEB (`make bench` fails when none answers).
STACK_BENCHES ?= push_to_verdict
BENCH_WEB ?= http://127.0.0.1:8080

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

bench: bootstrap ## the benchmarks in bench/ (push_to_verdict needs `make run` in another terminal)
	@for b in $(BENCHES); do echo "+ python -m bench.$$b"; $(BIN)/python -m bench.$$b || exit 1; done; \
	if [ -z "$(STACK_BENCHES)" ]; then exit 0; fi; \
	if ! $(BIN)/python -c 'import sys, httpx; httpx.get(sys.argv[1] + "/api/v1/health", timeout=3).raise_for_status()' \
		"$(BENCH_WEB)" 2>/dev/null; then \
		echo "make bench: no stack answers at $(BENCH_WEB); $(STACK_BENCHES) not run. Start \`make run\` in another" \
			"terminal, or run only the standalone ones with \`make bench STACK_BENCHES=\`." >&2; \
		exit 1; \
	fi; \
	for b in $(STACK_BENCHES); do echo "+ python -m bench.$$b"; $(BIN)/python -m bench.$$b --web "$(BENCH_WEB)" || exit 1; done

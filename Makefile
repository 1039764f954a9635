# servekit developer commands. `make run` serves the example model, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
HOST ?= 127.0.0.1
PORT ?= 8000
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: install system-tools container-tools run test soak lint format bench clean

install: $(VENV)/.installed

# torch is pinned first so that nothing later pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(FIND_LINKS) "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet $(FIND_LINKS) -e ".[dev]"
	touch $@

run: install
	$(BIN)/servekit demo --host $(HOST) --port $(PORT)

# chromium and promtool, from Debian's packages, for the tests that check the drift report and alert rules.
system-tools:
	./scripts/ensure-system-tools

# podman, runc and debootstrap, from Debian's packages, for the test that builds and runs the Docker image.
container-tools:
	./scripts/ensure-container-tools

test: install system-tools container-tools
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest

# 60 s at 64 connections against a real server (the default test run does a 12 s version).
soak: install system-tools
	SOAK_SECONDS=60 $(BIN)/pytest -s tests/e2e/test_soak.py

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

# Speed benchmark (~14 min; BENCH_ARGS=--quick for ~2 min). Report: benchmarks/results/latest.md
bench: install
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist src/*.egg-info

# The two set-up commands: `make run` and `make test`. Both create .venv and install first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export PATH := $(abspath $(VENV))/bin:$(PATH)
# Let Python cache bytecode even where the environment says not to: `make test` starts some 30
# Python processes, and without the caches each one recompiles this repository's modules and
# pytest rewrites the asserts of its plugins' ~300 modules again in every worker.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run registry stop test test-fast coverage lint bench fuzz soak clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Local registry on 127.0.0.1:$REGISTRY_PORT (default 5000; started or reused, or
# $MLFLOW_TRACKING_URI's), demo model behind `staging`, gateway on :$GATEWAY_PORT (default 8000).
run: install
	$(PY) -m scripts.run_local $(ARGS)

# The local registry alone (in the background, data in .local/mlflow), and stopping it.
registry: install
	$(PY) -m scripts.local_registry start

stop: install
	$(PY) -m scripts.local_registry stop

# Three workers (on 2 cores: the tests wait on servers and timeouts part of the time), one
# test file each at a time (module fixtures start once), the longest files first
# (tests/conftest.py). One file alone: `.venv/bin/python -m pytest tests/test_x.py`.
XDIST := -n 3 --dist loadfile --no-loadscope-reorder
# MLflow's telemetry sets and unsets an environment variable from a thread of its own, while
# other threads read the environment for every HTTP request (urllib's proxy lookup): under
# load a registry call failed with KeyError '_MLFLOW_TELEMETRY_SESSION_ID'. Off for the tests
# (and their subprocesses); the tests send nothing anywhere but 127.0.0.1 anyway.
test test-fast coverage fuzz soak: export MLFLOW_DISABLE_TELEMETRY = true
test: install
	$(PY) -m pytest $(XDIST)

# Unit and in-process app tests only: no registry, no server process, no TensorFlow training.
test-fast: install
	$(PY) -m pytest -q -n 2 tests/unit tests/app

# The same suite with line coverage of gateway/ and model_wrapper/, subprocesses included.
coverage: install
	$(PY) -m pytest $(XDIST) --cov --cov-report=term

# Schemathesis against a live gateway with 1,000 cases per fuzz test (`make test` runs 150);
# prints the figures RELIABILITY.md quotes.
fuzz: install
	FUZZ_CASES=1000 $(PY) -m pytest tests/e2e/test_fuzz.py -q -s -rxX

# The long runs `make test` shortens: 20 measured reloads through three versions (`make test`
# runs 8), 30 s of hot swaps under load (8), 10,000 predictions with failing callbacks (3,000),
# 1,000 examples per property test of windows and callback addresses (200).
soak: install
	RELOAD_SOAK_RELOADS=20 HOT_SWAP_SECONDS=30 STEADY_PREDICTIONS=10000 PROPERTY_EXAMPLES=1000 \
		$(PY) -m pytest tests/e2e/test_reload_memory.py tests/e2e/test_hot_swap.py \
		tests/e2e/test_steady_resources.py tests/unit/test_validation.py tests/unit/test_webhook_policy.py -q -s

# Gateway vs the HTTP floor and `mlflow models serve`, ~9-12 min: starts and stops its own
# registry and servers, installs wrk with apt-get if missing, writes BENCHMARKS.md.
# ARGS=--quick: a smoke run of every step (a few minutes), written to /tmp/BENCHMARKS.quick.md.
bench: install
	$(PY) -m benchmarks.run $(ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .local *.egg-info

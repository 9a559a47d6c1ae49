# Kennel: two commands on a fresh machine.
#   make up      set the machine up, build the images, run the local stack (docker compose)
#   make test    set the machine up, build the images, lint, run every test layer
#   make bench   benchmarks against TorchServe, BentoML, LitServe and the in-process ceiling; writes docs/benchmarks.md (~35 min)
#   make soak    20 minutes of good, bad and hostile requests to the compose stack; adds to docs/benchmarks.md
#   make build IMAGES=serve-compat   the serving image's compatibility build (torch and the real inference
#                toolkit, on the training image; containers/serve/README.md says when it is worth it)
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
COMPOSE := docker compose
# What `make build` builds: empty means train, serve and proxy (`python -m images build --help` lists all).
IMAGES ?=

.PHONY: up test bench soak setup build lint format down clean

up: build
	@echo "make up: the training report goes into the model volume; copy it out with: $(COMPOSE) run --rm --no-deps --entrypoint cat train /opt/ml/model/report.html > report.html"
	$(COMPOSE) up

# A test module to a worker, TEST_WORKERS of them (auto: one per core), in the order tests/conftest.py
# gives (the long ones first); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= auto
test: build lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# Not part of `make test`: it takes about 35 minutes (BentoML and LitServe included) and wants a quiet machine.
bench: build
	scripts/setup.sh loadgen
	$(PY) -m pip install -q -r bench/requirements.txt
	$(PY) -m bench.peers.host install
	$(PY) -m bench.serve --out bench/results/serving.json
	$(PY) -m bench.train_throughput --out bench/results/training.json
	$(PY) -m bench.report

# Not part of `make test`: about 25 minutes (10 on the serving container, 10 through the proxy).
soak: build
	$(PY) -m pip install -q -r bench/requirements.txt
	$(PY) -m bench.soak --out bench/results/soak.json
	$(PY) -m bench.report

# scripts/setup.sh is idempotent and fast when everything is in place; each target that needs the
# machine calls it, so no target depends on an earlier one having been run by hand.
setup:
	scripts/setup.sh

build: setup
	$(PY) -m images build $(IMAGES)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

down:
	$(COMPOSE) down

clean:
	-$(COMPOSE) down --volumes --remove-orphans
	-docker image rm kennel-train:local kennel-serve:local kennel-proxy:local kennel-serve-compat:local
	rm -rf $(VENV) .kennel .pytest_cache .ruff_cache

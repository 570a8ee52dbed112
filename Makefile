# hiergan — one command per job. Every target installs what it needs on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_VERSION ?= 3.11
VENV           ?= .venv
PY             := $(VENV)/bin/python
DATA_DIR       ?= data
CONFIG         ?= pipelines/configs/train.yaml
# A stamp that is newer than the lock means the environment matches it.
STAMP          := $(VENV)/.hiergan-installed
FMNIST_DEB_DIR := /usr/share/datasets/fashion-mnist
WORDNET_DIR    := /usr/share/wordnet
# Entry points set these too; exporting them here covers every tool that make starts.
export ZENML_ANALYTICS_OPT_IN := false
export MLFLOW_DISABLE_TELEMETRY := true
export GE_USAGE_STATS := FALSE
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := 1

.PHONY: help setup data wordnet train monitor promote registry serve test k8s-check lint format lock clean mlflow-ui dashboard

help:  ## List the targets.
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP) data wordnet  ## Create .venv from requirements.lock, fetch Fashion-MNIST and WordNet.

$(STAMP): requirements.lock
	@command -v uv >/dev/null || python3 -m pip install --quiet uv
	@[ -x $(PY) ] || uv venv --quiet --python $(PYTHON_VERSION) $(VENV)
	uv pip install --python $(PY) --compile-bytecode -r requirements.lock
	@touch $@

data: $(STAMP)  ## Put Fashion-MNIST under $(DATA_DIR)/FashionMNIST/raw (Debian package, else download).
	@if [ ! -d $(FMNIST_DEB_DIR) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's dataset-fashion-mnist ..."; \
		(apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null)) || \
		echo "apt-get could not install dataset-fashion-mnist; trying the download next."; \
	fi
	$(PY) -m models.data.sources fetch-fashion-mnist --data-dir $(DATA_DIR)

wordnet:  ## Install Debian's wordnet-base (WordNet 3.0, read offline for ImageNet-style trees).
	@if [ ! -f $(WORDNET_DIR)/data.noun ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing Debian's wordnet-base ..."; \
			apt-get install -y -qq wordnet-base >/dev/null 2>&1 || \
			(apt-get update -qq >/dev/null && apt-get install -y -qq wordnet-base >/dev/null) || \
			echo "apt-get could not install wordnet-base: imagenet-folder trees need it."; \
		else \
			echo "WordNet missing: as root run apt-get install wordnet-base (imagenet-folder trees need it)."; \
		fi; \
	fi

train: setup  ## Run the train pipeline with $(CONFIG).
	$(PY) -m pipelines.train_pipeline --config $(CONFIG)

monitor: setup  ## Drift of BATCH (folder, .npz or request log) vs the champion; exit 3 on drift.
	@[ -n "$(BATCH)" ] || { echo "usage: make monitor BATCH=path [MONITOR_ARGS='--model-dir DIR']"; exit 2; }
	$(PY) -m pipelines.monitor_pipeline --batch $(BATCH) $(MONITOR_ARGS)

promote: setup  ## Promote the registry's challenger to champion if it passes the gates.
	$(PY) -m pipelines.promote_pipeline --config pipelines/configs/promote.yaml

registry: $(STAMP)  ## Show the registered model's versions, aliases and key tags.
	$(PY) -m registry

serve: $(STAMP)  ## Serve the registry's champion on http://127.0.0.1:3000.
	$(PY) -m serving.serve_champion --host 127.0.0.1 --port 3000

# Two pytest-xdist workers, one torch thread each (tests/conftest.py); the longest tests start
# first and an idle worker steals queued ones (--dist worksteal); the smoke train run is still
# made once (tests/integration/conftest.py).
PYTEST_WORKERS ?= 2

test: setup  ## Lint, then run the test suite (PYTEST_WORKERS=0: in one process).
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist worksteal)

k8s-check: $(STAMP)  ## Kubernetes: validate infra/k8s; register the stack, submit run + schedule to a loopback API.
	$(PY) -m pytest -v -s -p no:logging tests/unit/infra tests/unit/pipelines/test_schedule.py \
		tests/integration/test_k8s_stack.py

mlflow-ui: $(STAMP)  ## Open the MLflow UI on the local stack's tracking store (127.0.0.1:5000).
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port 5000 \
		--backend-store-uri "$$($(PY) -m registry.stack tracking-uri | tail -1)"

dashboard: $(STAMP)  ## Start the local ZenML dashboard (its first-visit survey answered: no newsletter).
	$(PY) -m registry.stack dashboard-ready
	$(VENV)/bin/zenml login --local

lint: $(STAMP)  ## ruff check + format check.
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)  ## Apply ruff's fixes and formatting.
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

lock:  ## Re-resolve requirements.lock from pyproject.toml (needs the package index).
	@command -v uv >/dev/null || python3 -m pip install --quiet uv
	uv pip compile pyproject.toml --extra dev --python-version $(PYTHON_VERSION) \
		--python-platform x86_64-unknown-linux-gnu -o requirements.lock

clean:  ## Remove the environment and local stores (ZenML's global store is left alone).
	rm -rf $(VENV) mlruns .pytest_cache .ruff_cache

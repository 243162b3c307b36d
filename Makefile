# hybridstream: every developer and CI command. `make help` lists them.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
# history for the batch model: the project's turbine series (data/turbine/, shipped in the repo)
HISTORY     ?= data/turbine/train.csv
BATCH_MODEL := build/batch-model
# Node.js for the CDK CLI and jsii: the project's own (package.json, node_modules/.bin/node, Node 24),
# never an unsupported machine one (Node 20 is end of life for both)
export JSII_NODE := $(CURDIR)/node_modules/.bin/node
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: help setup test lint synth batch-model demo bench-edge bench-latency bench-footprint bench-train clean kafka-up kafka-down chaos

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: $(STAMP) ## install everything (apt, venv + pip, npm CDK CLI, Kafka jars via mvn)

$(STAMP): scripts/setup.sh requirements.txt requirements-dev.txt edge_app/requirements.txt training_job/requirements.txt pyproject.toml package.json
	bash scripts/setup.sh

lint: setup ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup lint synth ## ruff, offline cdk synth + cdk-nag + cfn-lint, every test (starts and stops its own servers)
	$(VENV)/bin/pytest -q

demo: setup ## the whole loop on this machine, real local servers, a report in reports/ (QUICK=1 MODE=edge|cloud SCENARIOS=...)
	bash scripts/demo.sh

synth: setup $(BATCH_MODEL)/model.tflite ## cdk synth offline into cdk.out/ with cdk-nag, then cfn-lint
	bash scripts/synth.sh

# The pre-trained batch model the BatchModel Greengrass component ships (synth fails without it).
# A file target: rebuilt only when missing or older than the history CSV or the feature spec's code
# (the default spec, with its calendar features, is defined there: the edge refuses a speed model of another spec).
batch-model: $(BATCH_MODEL)/model.tflite ## pre-train the batch model on $(HISTORY) into build/batch-model/

# the trainer's code too: a changed TrainConfig default (issue 17) or trainer revision makes a new model
$(BATCH_MODEL)/model.tflite: $(HISTORY) model_contract/features.py model_contract/calendar.py \
  model_contract/context_stack.py model_contract/online_linear.py $(wildcard training_job/*.py) | $(STAMP)
	rm -rf build/batch-model-train
	$(VENV)/bin/hybridstream train pretrain --csv $(HISTORY) --out build/batch-model-train
	@newest=$$(ls -td build/batch-model-train/batch/*/ | head -n 1); \
	  test -f "$$newest/model.tflite" -a -f "$$newest/manifest.json" || { echo "batch-model: no model in $$newest" >&2; exit 1; }; \
	  mkdir -p $(BATCH_MODEL).tmp && cp "$$newest/model.tflite" "$$newest/manifest.json" $(BATCH_MODEL).tmp/ && \
	  cp "$$newest/weights.npz" $(BATCH_MODEL).tmp/ && \
	  rm -rf $(BATCH_MODEL) && mv $(BATCH_MODEL).tmp $(BATCH_MODEL) && echo "batch-model: $$newest -> $(BATCH_MODEL)/"

bench-edge: setup ## edge app benchmark against a real broker (last line: JSON)
	$(PY) -m hybridstream.devtools.edge_bench

bench-latency: setup ## edge app vs a bare echo, interleaved 1 s slices at 1,000/s, 5 runs (last line: JSON; BENCHMARKS.md)
	$(PY) -m hybridstream.devtools.edge_latency

bench-footprint: setup ## memory of what runs on a Pi: broker RSS per heap, edge app, trainer (docs/deploy.md "Which Pi")
	$(PY) -m hybridstream.devtools.pi_footprint

bench-train: setup ## training job benchmark against real local servers (last line: JSON)
	$(PY) -m hybridstream.devtools.train_bench

# Fault-injection scenarios against the real local stack (issue 12): reports/chaos/{results.json,report.md}.
# QUICK=1: the short version CI runs. CHAOS_ARGS: e.g. --only link-down fuzz, --known-failing NAME, --keep DIR.
chaos: setup ## fault injection (broker/edge/trainer kills, link faults via toxiproxy, bad models, fuzzing, load, security) -> reports/chaos/
	$(PY) -m hybridstream.chaos $(if $(QUICK),--quick) $(CHAOS_ARGS)

kafka-up: setup ## start a Kafka broker on 127.0.0.1:9092
	$(PY) -m hybridstream local kafka start

kafka-down: ## stop it
	$(PY) -m hybridstream local kafka stop

clean: ## remove build output and local server state (keeps .venv and caches)
	rm -rf cdk.out .local .pytest_cache .ruff_cache bench-out

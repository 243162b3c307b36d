# hybridstream: every developer and CI command. `make help` lists them.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: help setup test lint unit synth demo bench-edge bench-train bench clean kafka-up kafka-down

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

demo: setup ## the whole loop on this machine, real local servers, no AWS account
	@if [ -f scripts/demo.sh ]; then bash scripts/demo.sh; else echo "make demo: not yet (the local-stack issue brings it)"; fi

synth: setup ## cdk synth offline into cdk.out/ with cdk-nag, then cfn-lint
	bash scripts/synth.sh

bench-edge: setup ## edge app benchmark against a real broker (last line: JSON)
	$(PY) -m edge_app.bench

bench-train: setup ## training job benchmark against real local servers (last line: JSON)
	$(PY) -m training_job.bench

kafka-up: setup ## start a Kafka broker on 127.0.0.1:9092
	$(PY) -m hybridstream.localstack.kafka start

kafka-down: ## stop it
	$(PY) -m hybridstream.localstack.kafka stop

clean: ## remove build output and local server state (keeps .venv and caches)
	rm -rf cdk.out .local .pytest_cache .ruff_cache bench-out

# Set-up and entry points. `make train` and `make test` each create .venv and install robot_rl first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DEPLOY_VENV := .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed

.PHONY: train test lint firmware bench clean deploy-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[train,dev,ros,jax]"
	touch $(STAMP)

# A robot computer's install: the `deploy` extra only, no torch (tests/test_deploy_venv.py runs robot-rl deploy in it).
$(DEPLOY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet --upgrade pip
	$(DEPLOY_VENV)/bin/pip install --quiet -e ".[deploy]"
	touch $(DEPLOY_STAMP)

deploy-venv: $(DEPLOY_STAMP)

train: $(STAMP)  ## the embedded default: simulated pick-cube, no ROS, CPU (ARGS="key=value ..." overrides)
	$(BIN)/robot-rl train $(ARGS)

test: lint firmware deploy-venv
	$(BIN)/python -m pytest -q $(ARGS)

firmware:  ## the firmware's C unit tests (-Wall -Wextra -Werror, sanitizers), its host build, and the board port with its size
	$(MAKE) -C firmware test host board

lint: $(STAMP)  ## ruff (lint + format check) and the import-linter layer contracts in pyproject.toml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/learner_throughput.py
	$(BIN)/python bench/learning_curve.py

clean:
	rm -rf $(VENV) $(DEPLOY_VENV)
	$(MAKE) -C firmware clean

# Two commands set everything up on a fresh machine with Python 3.11: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DEMO_DIR ?= runs/demo-digits

.PHONY: install test demo train-digits bench lint format clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstalls only when pyproject.toml changed (the stamp carries its checksum).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[trainer,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

test: install
	$(BIN)/python -m pytest

# The whole flow on this machine, no AWS account: a dry-run launch of the digits recipe, one spot
# interruption injected at training step 30 (mid-epoch 2, before the target can be reached on any
# machine), an automatic resume on a new instance, then the cost.
demo: install
	$(BIN)/spotrain launch --dry-run --recipe digits --inject-interruption step:30 --auto-resume -y
	$(BIN)/spotrain cost

# The trainer alone, here, from scratch (no controller).
train-digits: install
	rm -rf $(DEMO_DIR)
	$(BIN)/python -m trainer.train --recipe digits --run-dir $(DEMO_DIR) --seed 0

bench: install
	$(BIN)/python bench/trainer_overhead.py
	$(BIN)/python bench/sync_vs_rsync.py
	$(BIN)/python bench/gpu.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

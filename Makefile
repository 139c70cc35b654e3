# Two commands set everything up on a fresh machine with Python 3.11: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DEMO_DIR ?= runs/demo-digits

.PHONY: install test demo bench lint format clean

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

# Until the dry-run exists: train the digits recipe here, from scratch, and print the result.
demo: install
	rm -rf $(DEMO_DIR)
	$(BIN)/python -m trainer.train --recipe digits --run-dir $(DEMO_DIR) --seed 0
	@echo "run directory: $(DEMO_DIR) (events.jsonl, train.log, status.json, ckpt/)"

bench: install
	$(BIN)/python bench/trainer_overhead.py
	$(BIN)/python bench/gpu.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

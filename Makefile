# Two entry points: `make demo` and `make test`. Both create .venv and install everything first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint typecheck bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@echo "Creating the virtualenv $(VENV) ..."
	$(PYTHON) -m venv $(VENV)
	@echo "Upgrading pip ..."
	$(BIN)/pip install --quiet --upgrade pip
	@echo "Installing gonogo and its dependencies (scikit-learn, pandas, SQLAlchemy, ...) into $(VENV);"
	@echo "the first time this downloads about 150 MB and takes a couple of minutes ..."
	$(BIN)/pip install -e '.[dev]'
	@echo "Installed: $(BIN)/gonogo"
	touch $@

demo: install
	$(BIN)/gonogo demo

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check github_app rules scorer tests benchmarks

typecheck: install
	$(BIN)/mypy github_app rules scorer

bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/decision_latency.py
	$(BIN)/python benchmarks/parse.py
	$(BIN)/python benchmarks/risk_model.py
	$(BIN)/python benchmarks/startup.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache gonogo.db gonogo.db-wal gonogo.db-shm

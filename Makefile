# Two commands do everything on a fresh clone (Python 3.11, make, git, the package index):
#   make run    set up, regenerate the demo data (checked against data.dvc), run `dvc repro`
#   make test   set up and run the whole test suite (what CI runs)
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
UV_VERSION := 0.13.9
export PATH := $(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test test-fast install system data lab lint lock clean crm-demo

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock -e . --no-deps
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $@

install: $(VENV)/.installed

# Debian packages the tests need (chromium for the browser tests); installs only what is missing.
system:
	bash scripts/setup-system.sh

data: install
	leadscore demo --out data --if-missing --verify data.dvc

run: data
	dvc repro

test: install system
	pytest -n 2 --dist loadfile --durations=10

test-fast: install system
	pytest -n 2 --dist loadfile -m "not slow"

# Scores where sales works: the demo CRM in SQLite, `leadscore sync --follow`, one new activity, its new score.
crm-demo: run
	python scripts/crm_demo.py

lab: install
	jupyter lab

lint: install
	ruff check src tests benchmarks
	lint-imports
	mypy src

# Re-pin every dependency (run after editing pyproject.toml).
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra lab --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) artifacts .pytest_cache

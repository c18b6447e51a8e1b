# The two README commands. Both create .venv and install requirements first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast bench clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/streamlit run app.py --server.address localhost --browser.gatherUsageStats false $(if $(PROJECT),-- --project $(PROJECT),)

test: $(STAMP)
	$(PY) -m pytest

# The unit tier, for a fast inner loop (under 2 minutes on 2 CPU cores):
# no model training, no whole rounds or simulations, no browser.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not browser"

bench: $(STAMP)
	$(PY) bench/engine.py
	$(PY) bench/app.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts

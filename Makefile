# The two README commands. Both create .venv and install requirements first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/streamlit run app.py --server.address localhost --browser.gatherUsageStats false $(if $(PROJECT),-- --project $(PROJECT),)

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/engine.py
	$(PY) bench/app.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts

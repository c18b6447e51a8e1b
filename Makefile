# The README commands. Each creates .venv and installs what it needs first:
# `make run` the app's dependencies only (requirements.txt), `make test` the
# test tools on top (requirements-dev.txt). Each set has its own stamp file,
# so one is installed again only when its list changes.
#
#   make run                      the app on http://localhost:8501
#   make run PORT=8600            on another port
#   make run PROJECT=path/to/p    with that project open
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test test-fast bench clean

$(PY):
	@echo ">>> Creating the Python environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)

# pip prints each package as it downloads and installs it (no --quiet): the
# first install fetches about 3 GB (PyTorch with CUDA) and takes minutes.
$(RUN_STAMP): requirements.txt | $(PY)
	@echo ">>> Installing the app's dependencies from requirements.txt (PyTorch, Streamlit, ...)."
	@echo ">>> The first time this downloads a few GB and takes several minutes; pip shows its progress below."
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	@touch $@
	@echo ">>> App dependencies installed."

$(DEV_STAMP): requirements-dev.txt requirements-notebook.txt $(RUN_STAMP)
	@echo ">>> Installing the test tools from requirements-dev.txt (pytest, Playwright)"
	$(PY) -m pip install -r requirements-dev.txt
	@touch $@
	@echo ">>> Test tools installed."

run: $(RUN_STAMP)
	@echo ">>> Starting VAAL Studio on http://localhost:$(PORT) (Ctrl+C stops it)"
	$(VENV)/bin/streamlit run app.py --server.address localhost --server.port $(PORT) --browser.gatherUsageStats false $(if $(PROJECT),-- --project $(PROJECT),)

test: $(DEV_STAMP)
	$(PY) -m pytest

# The unit tier, for a fast inner loop (under 2 minutes on 2 CPU cores):
# no model training, no whole rounds or simulations, no browser.
test-fast: $(DEV_STAMP)
	$(PY) -m pytest -m "not slow and not browser"

bench: $(DEV_STAMP)
	$(PY) bench/engine.py
	$(PY) bench/app.py
	$(PY) bench/notebook.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts

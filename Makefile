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
# The Explore map's JavaScript (regl-scatterplot, bundled by esbuild), built
# from frontend/latent_map with the npm registry's packages at the versions
# package-lock.json pins; views/routes.py serves it. Not committed.
MAP_JS := assets/build/latent_map.js
MAP_SRC := frontend/latent_map

.PHONY: run test test-fast bench clean map

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

$(MAP_JS): $(MAP_SRC)/src/map.js $(MAP_SRC)/package.json $(MAP_SRC)/package-lock.json
	@echo ">>> Building the Explore map's JavaScript (npm ci + esbuild in $(MAP_SRC))"
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js and npm (apt-get install nodejs npm)"; exit 1; }
	cd $(MAP_SRC) && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent
	@touch $@

map: $(MAP_JS)

run: $(RUN_STAMP) $(MAP_JS)
	@echo ">>> Starting VAAL Studio on http://localhost:$(PORT) (Ctrl+C stops it)"
	$(VENV)/bin/streamlit run app.py --server.address localhost --server.port $(PORT) --browser.gatherUsageStats false $(if $(PROJECT),-- --project $(PROJECT),)

test: $(DEV_STAMP) $(MAP_JS)
	$(PY) -m pytest

# The unit tier, for a fast inner loop (under 2 minutes on 2 CPU cores):
# no model training, no whole rounds or simulations, no browser.
test-fast: $(DEV_STAMP) $(MAP_JS)
	$(PY) -m pytest -m "not slow and not browser"

bench: $(DEV_STAMP) $(MAP_JS)
	$(PY) bench/engine.py
	$(PY) bench/app.py
	$(PY) bench/notebook.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts assets/build $(MAP_SRC)/node_modules

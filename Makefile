# AtomLens: `make run` starts the app on a sample image, `make test` runs the test suite.
# Both create .venv on first use and reinstall only when setup.cfg or pyproject.toml change.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
PYTEST_ARGS ?=

.PHONY: run test bench models clean distclean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "AtomLens needs Python >= 3.10"'
	$(PYTHON) -m venv $(VENV) || { echo "python venv failed: on Debian/Ubuntu run 'apt-get install python3-venv'"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

# torch first, pinned: a plain 'torch' requirement would pull a multi-GB CUDA build
$(VENV)/.torch-stamp: | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH)
	@touch $@

$(VENV)/.run-stamp: setup.cfg pyproject.toml $(VENV)/.torch-stamp
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.test-stamp: setup.cfg pyproject.toml $(VENV)/.torch-stamp
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.run-stamp

run: $(VENV)/.run-stamp
	$(BIN)/atomlens --sample sto-haadf

test: $(VENV)/.test-stamp
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.test-stamp
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/load_speed.py
	$(BIN)/python bench/sim_speed.py

# Retrain the bundled models from their recipes into build/models/ (compare with resources/models/).
# Each has two stages: the second fine-tunes the first on its own recipe.
# On a 2-core CPU each stage takes up to the recipe's time limit (55 + 35, 55 + 30 and 48 + 35 min);
# with a GPU the recipes' cuda profiles take minutes.
MODELS := build/models
models: $(VENV)/.run-stamp
	$(BIN)/atomlens train --recipe resources/recipes/stem-haadf.json --out $(MODELS)/stem-haadf-stage1
	$(BIN)/atomlens train --recipe resources/recipes/stem-haadf-ft.json --init-from $(MODELS)/stem-haadf-stage1 --out $(MODELS)/stem-haadf-stage2
	$(BIN)/atomlens train --recipe resources/recipes/stem-haadf-real.json --init-from $(MODELS)/stem-haadf-stage2 --out $(MODELS)/stem-haadf-stage3
	$(BIN)/atomlens train --recipe resources/recipes/stem-haadf-real-pt.json --init-from $(MODELS)/stem-haadf-stage3 --out $(MODELS)/stem-haadf
	$(BIN)/atomlens train --recipe resources/recipes/stem-single-atoms.json --init-from $(MODELS)/stem-haadf --out $(MODELS)/stem-single-atoms-stage1
	$(BIN)/atomlens train --recipe resources/recipes/stem-single-atoms-2.json --init-from $(MODELS)/stem-single-atoms-stage1 --out $(MODELS)/stem-single-atoms
	$(BIN)/atomlens train --recipe resources/recipes/defect-cam.json --out $(MODELS)/defect-cam-stage1
	$(BIN)/atomlens train --recipe resources/recipes/defect-cam-ft.json --init-from $(MODELS)/defect-cam-stage1 --out $(MODELS)/defect-cam-stage2
	$(BIN)/atomlens train --recipe resources/recipes/defect-cam-real.json --init-from $(MODELS)/defect-cam-stage2 --out $(MODELS)/defect-cam
	$(BIN)/atomlens train --recipe resources/recipes/stm-topo.json --out $(MODELS)/stm-topo-stage1
	$(BIN)/atomlens train --recipe resources/recipes/stm-topo-ft.json --init-from $(MODELS)/stm-topo-stage1 --out $(MODELS)/stm-topo

clean:
	rm -rf build dist app/*.egg-info .pytest_cache tests/_artifacts
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# forgetkit: the package, the book and their tests. `make help` lists the targets.
#
# Everything runs in a virtual environment .venv, created and refreshed by `make setup`
# (again only when pyproject.toml or constraints.txt change). Data: when FORGETKIT_DATA is
# unset, the official MNIST and Olivetti files are downloaded once into
# ~/.cache/forgetkit/data; when it is set, that folder is only verified. After that,
# FORGETKIT_OFFLINE=1: nothing downloads while chapters or tests run.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.NOTPARALLEL:

PYTHON ?= python3
PROFILE ?= ci
DEVICE ?= cpu
THREADS ?= 2
NB ?=
CONSTRAINTS ?= constraints.txt

VENV ?= .venv
BIN := $(abspath $(VENV))/bin
SETUP_STAMP := $(abspath $(VENV))/.forgetkit-setup
STAGE := $(PYTHON) scripts/stage.py
TIMES := _build/stage-times.tsv
# Progress bars off (FORGETKIT_PROGRESS=0): they must never enter a compared output.
NBVAL := FORGETKIT_PROGRESS=0 pytest -p no:cacheprovider --nbval-lax --nbval-current-env \
         --nbval-sanitize-with tests/nbval_sanitize.cfg book/*.ipynb

ifeq ($(strip $(FORGETKIT_DATA)),)
FORGETKIT_DATA := $(HOME)/.cache/forgetkit/data
DATA_COMMAND := prepare
else
DATA_COMMAND := verify
endif
export FORGETKIT_DATA := $(abspath $(FORGETKIT_DATA))
export FORGETKIT_OFFLINE := 1
export PATH := $(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
THREAD_ENV = env OMP_NUM_THREADS=$(1) MKL_NUM_THREADS=$(1)

.PHONY: help setup data lint format unit notebooks book nbval nbval-warm nbval-cold \
        browser-deps browser test test-stages clean distclean

help:
	@echo "forgetkit: make targets"
	@echo ""
	@echo "  make book        set up, prepare the data, execute every chapter, build _build/html"
	@echo "  make test        lint, unit tests, the book, nbval twice (2 threads with the book's"
	@echo "                   checkpoints; 1 thread, empty cache), browser check of the site"
	@echo ""
	@echo "  make setup       create or refresh .venv (pip install -c constraints.txt -e .[book,test])"
	@echo "  make data        download the data once (FORGETKIT_DATA unset) or verify FORGETKIT_DATA"
	@echo "  make lint        ruff check, ruff format --check, and the GitHub workflows' schema"
	@echo "  make format      ruff format the code, the notebooks and the chapter sources"
	@echo "  make unit        the unit tests (pytest tests -m 'not browser')"
	@echo "  make notebooks   regenerate book/<chapter>.ipynb from book/src/<chapter>.md (NB=name for one)"
	@echo "  make nbval       compare the committed notebooks with fresh runs (warm and cold)"
	@echo "  make browser     open the built site in headless Chromium (browser-deps installs it)"
	@echo "  make clean       remove _build;  make distclean: also .venv"
	@echo ""
	@echo "Variables: PROFILE=$(PROFILE) (ci|paper)  DEVICE=$(DEVICE) (cpu|cuda)  THREADS=$(THREADS)"
	@echo "           VENV=$(VENV) (a conda environment instead: VENV=\$$CONDA_PREFIX)"
	@echo "           CONSTRAINTS=$(CONSTRAINTS) (/dev/null: the newest releases pyproject.toml allows)"
	@echo "           FORGETKIT_DATA=$(FORGETKIT_DATA)"

setup: $(SETUP_STAMP)

$(SETUP_STAMP): pyproject.toml constraints.txt
	@$(STAGE) setup -- bash -c '\
	  if [ ! -x "$(BIN)/python" ]; then $(PYTHON) -m venv "$(VENV)"; fi && \
	  "$(BIN)/python" -m pip install --quiet -c $(CONSTRAINTS) -e ".[book,test]" && \
	  touch $(SETUP_STAMP)'

data: setup
	@datasets="mnist olivetti"; \
	if [ -f "$(FORGETKIT_DATA)/cifar10_jpeg_15k.npz" ]; then datasets="$$datasets cifar10-jpeg15k"; fi; \
	$(STAGE) data -- forgetkit-data $(DATA_COMMAND) "$(FORGETKIT_DATA)" --datasets $$datasets

lint: setup
	@$(STAGE) lint -- bash -c 'ruff check . && ruff format --check . && \
	  check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml'

format: setup
	ruff format .
	jupytext --quiet --pipe-fmt ipynb --pipe "ruff format --stdin-filename chapter.ipynb -" book/src/*.md

unit: setup data
	@$(STAGE) unit -- pytest tests -m "not browser"

notebooks: setup data
	@$(STAGE) notebooks -- $(call THREAD_ENV,$(THREADS)) python scripts/build_book.py notebooks $(NB)

book: setup data
	@$(STAGE) book -- $(call THREAD_ENV,$(THREADS)) \
	  python scripts/build_book.py build --profile $(PROFILE) --device $(DEVICE)

nbval: nbval-warm nbval-cold

# The committed outputs, re-executed with 2 threads, reusing the book build's checkpoints.
nbval-warm: setup data
	@$(STAGE) nbval-warm -- $(call THREAD_ENV,2) $(NBVAL)

# Again with 1 thread and an empty checkpoint cache: everything retrains, and the compared
# outputs must not change.
nbval-cold: setup data
	@rm -rf _build/cold-cache
	@$(STAGE) nbval-cold -- $(call THREAD_ENV,1) FORGETKIT_CACHE=$(CURDIR)/_build/cold-cache $(NBVAL)
	@rm -rf _build/cold-cache

browser-deps:
	@if [ -x /usr/bin/chromium ]; then \
	  echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null | head -n 1)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  $(STAGE) browser-deps -- bash -c 'apt-get update -qq && apt-get install -y -qq chromium >/dev/null'; \
	else \
	  echo "chromium is missing: install Debian's chromium (sudo apt-get install chromium);"; \
	  echo "the browser test skips without it (and fails under CI)"; \
	fi

browser: setup browser-deps
	@$(STAGE) browser -- pytest -p no:cacheprovider tests/test_browser.py

test:
	@mkdir -p _build && rm -f $(TIMES)
	@status=0; STAGE_TIMES=$(TIMES) $(MAKE) --no-print-directory test-stages || status=$$?; \
	$(STAGE) --summary $(TIMES); exit $$status

test-stages: setup data lint unit book nbval-warm nbval-cold browser

clean:
	rm -rf _build

distclean: clean
	rm -rf $(VENV) *.egg-info

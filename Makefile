# mastofargate: make install | test | lint | synth | demo | images | bench
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: install test lint synth demo images bench clean

install: $(STAMP)

# Editable in compat mode: a plain .pth entry instead of setuptools' import hook (~40 ms per CLI start).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat
	$(PY) -m compileall -q mastofargate  # bytecode even where PYTHONDONTWRITEBYTECODE is set (as on CI here)
	touch $(STAMP)

# The whole suite: lint and type check, then every test (Docker-backed image tests start their own engine
# and registry).
test: lint
	$(BIN)/pytest -n 2 --dist loadgroup

lint: install
	$(BIN)/ruff check mastofargate sandbox tests bench
	$(BIN)/ruff format --check mastofargate sandbox tests bench
	$(BIN)/mypy

# Regenerate the committed cfn/ and task_definitions/ from the example mastofargate.toml.
synth: install
	$(BIN)/mastofargate synth

# The main job on a fresh machine: a first install end to end against a local AWS emulator (moto plus
# stand-ins, started and stopped by the script), the generated stack in demo/ for review, and its cost.
demo: install
	scripts/demo-deploy.sh demo
	$(BIN)/mastofargate cost --config demo/mastofargate.toml
	$(BIN)/mastofargate cost --config demo/mastofargate.toml --compare

images: install
	$(BIN)/mastofargate images push

bench: install
	$(PY) bench/run.py

clean:
	rm -rf demo .pytest_cache .ruff_cache

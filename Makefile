# Two entry points: `make run` (install, then the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Point at the shared real data when it sits beside the checkout (never copied into the repository).
SHARED := $(abspath ../shared/data)
export HAR_DATA ?= $(if $(wildcard $(SHARED)/UCI_HAR_Dataset.zip),$(SHARED)/UCI_HAR_Dataset.zip)
export NAMES_DATA ?= $(if $(wildcard $(SHARED)/names),$(SHARED)/names)

.PHONY: install test run smoke browser

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: 2.13.0 is the CPU wheel on local disk; an open range would fetch a CUDA build.
install: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'

# Debian's Chromium for the dashboard browser test (Playwright's own download does not work offline).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

run: install
	$(BIN)/python -m search.har $(ARGS)

smoke: install
	$(BIN)/python -m search.smoke

# Two processes, one per core; a test module stays in one (its studies and reports are module fixtures).
test: install browser
	$(BIN)/python -m pytest -q -n 2 --dist loadscope

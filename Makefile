# CareSpace: `make run` serves the demo practice, `make test` installs what the tests need and runs them all.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test test-fast bench lint typecheck tables system-deps node-deps clean
CONFORMANCE := tests/e2e/conformance

# Editable install with the test extras; -qq keeps pip and the build backend to errors only.
$(STAMP):
	@echo "installing CareSpace and its test tools into $(VENV) (when setup.cfg or pyproject.toml change)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -qq --upgrade pip
	@$(BIN)/pip install -qq -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $@

run: $(STAMP)
	@$(BIN)/carespace db upgrade
	@$(BIN)/carespace demo
	@$(BIN)/carespace serve --host 127.0.0.1 --port 8000

# Debian's chromium (browser tests), postgresql (throwaway cluster) and, where Node.js is missing, nodejs and
# npm (the conformance clients), installed when missing.
system-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "installing Debian packages: chromium postgresql"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium postgresql >/dev/null; \
	fi
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "installing Debian packages: nodejs npm"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; \
	fi

# The independent JavaScript clients of tests/e2e/test_conformance_clients.py, exactly as pinned in the lock.
$(CONFORMANCE)/node_modules/.package-lock.json: $(CONFORMANCE)/package-lock.json | system-deps
	@echo "installing the conformance clients (npm ci in $(CONFORMANCE))"
	@cd $(CONFORMANCE) && npm ci --no-audit --no-fund --loglevel=error

node-deps: $(CONFORMANCE)/node_modules/.package-lock.json

test: $(STAMP) system-deps node-deps
	$(BIN)/pytest -q -p no:randomly --tb=native tests

test-fast: $(STAMP)
	CARESPACE_TEST_BACKENDS=sqlite $(BIN)/pytest -q -x -m "not e2e" tests

bench: $(STAMP) system-deps
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check carespace fhir_server smart_auth portal_ui bundles scripts tests bench

typecheck: $(STAMP)
	$(BIN)/mypy carespace fhir_server smart_auth portal_ui bundles

# Regenerate the packaged R4 tables and the CapabilityStatement from ../shared/fhir-r4.
tables: $(STAMP)
	$(BIN)/python scripts/gen_fhir_tables.py
	$(BIN)/python scripts/gen_capability.py
	$(BIN)/python scripts/gen_lab_tests.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache test-artifacts $(CONFORMANCE)/node_modules

# The README's two commands: `make demo` and `make test`. Each installs what it needs first.
#
# hedgewatch is installed into .venv as a wheel (not editable): the repository's flows/,
# transforms/, alerts/ and sql/ become hedgewatch.flows, hedgewatch.transforms, ... inside one
# import name, and the tests, the type checker and import-linter see exactly what users install.
# Any change to a source file reinstalls the package (a few seconds) on the next make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check
RUNTIME_STAMP := $(VENV)/.runtime-stamp
DEV_STAMP     := $(VENV)/.dev-stamp
PACKAGE_STAMP := $(VENV)/.package-stamp
SOURCES := pyproject.toml hedgewatch.example.toml \
	$(shell find src flows transforms alerts sql demo/data -type f \
		-not -path '*/__pycache__/*' -not -name '*.pyc' 2>/dev/null)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install install-dev demo test lint typecheck pytest bench clean

$(RUNTIME_STAMP): requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hedgewatch needs Python 3.11 or newer (found " + sys.version.split()[0] + "); run: make PYTHON=python3.11 ...")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.lock
	@touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.lock
	$(PIP) -r requirements.lock -r requirements-dev.lock
	@touch $@

# Built without isolation from the pinned hatchling of requirements-dev.lock when it is there.
$(PACKAGE_STAMP): $(RUNTIME_STAMP) $(SOURCES)
	if $(BIN)/python -c 'import hatchling' 2>/dev/null; then \
		$(PIP) --no-deps --no-build-isolation --force-reinstall . ; \
	else \
		$(PIP) --no-deps --force-reinstall . ; \
	fi
	@touch $@

install: $(PACKAGE_STAMP)

install-dev: $(DEV_STAMP) $(PACKAGE_STAMP)

demo: install
	$(BIN)/hedgewatch demo

test: lint typecheck pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# mypy checks the installed package (its files are the repository's, laid out as users get them).
typecheck: install-dev
	$(BIN)/mypy -p hedgewatch

pytest: install-dev
	$(BIN)/python -m pytest

# Side-by-side benchmarks (several minutes each; see benchmarks/README.md for what they compare).
bench: install-dev
	$(BIN)/python benchmarks/bench_correlation.py --repeat 2
	$(BIN)/python benchmarks/bench_backfill.py --repeat 3
	$(BIN)/python benchmarks/bench_prefect.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis

# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv with the machine's Python and install the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install demo test test-fast test-slow lint bench minisign clean

help:
	@echo "make demo   - set up, then run one whole federated round on a synthetic economy"
	@echo "make test   - set up, lint, then run the full test suite"
	@echo "make bench  - set up, then run the benchmarks (writes benchmarks/results.json)"
	@echo "make lint   - ruff and mypy"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	@touch $(STAMP)

install: $(STAMP)

# minisign is used by one interoperability test: install it when we can (root with apt).
minisign:
	@command -v minisign >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q minisign >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q minisign >/dev/null 2>&1)) \
	    || echo "note: could not install minisign; its interop test will be skipped"; \
	  else echo "note: minisign not found; its interop test will be skipped"; fi; }

demo: $(STAMP)
	$(BIN)/nce-lab demo

lint: $(STAMP)
	$(BIN)/ruff check sample_protocol nce_model_lab agency_runtime registry_combiner tests benchmarks tools
	$(BIN)/mypy

test: $(STAMP) minisign lint
	$(BIN)/python -m pytest -n 2 -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -x

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

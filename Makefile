# make sweep: fresh machine -> venv, dependencies, data -> the default sweep and export.
# make test:  fresh machine -> venv, dependencies, data -> the test suite (loopback-only network).
# make test-fast: the tier without Ray or slow runs (under a minute).
# make lint:  ruff check and ruff format --check (rules and line length in pyproject.toml); CI and
#             make test-fast run it before the tests.
PY      := .venv/bin/python
CONFIG  ?= configs/sweep.yaml
ARGS    ?=
DATA    := /usr/share/datasets/fashion-mnist

.PHONY: venv data browser sweep lint test test-fast teacher clean

venv: .venv/.installed
.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# The Debian package when apt is usable; otherwise the loader's own search/download and its message.
data:
	@if [ ! -d $(DATA) ] && [ ! -d data ] && [ -z "$$KDSWEEP_DATA" ] && command -v apt-get >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist || \
	  echo "warning: apt-get install dataset-fashion-mnist failed; kdsweep will search ./data or download"; \
	fi

# Headless chromium, for the test that opens the report as a person would (Debian's package).
browser:
	@if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null || echo "warning: apt-get install chromium failed"; \
	fi

sweep: venv data
	bash scripts/loopback.sh $(PY) -m orchestrator sweep --config $(CONFIG) $(ARGS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: venv data browser
	bash scripts/loopback.sh $(PY) -m pytest -q -n 2 --dist loadgroup $(ARGS)

test-fast: venv data lint
	$(PY) -m pytest -q -m "not ray and not slow" $(ARGS)

teacher: venv data
	bash scripts/loopback.sh $(PY) -m orchestrator teacher train --config configs/teacher.yaml $(ARGS)

clean:
	rm -rf .venv runs artifacts cache

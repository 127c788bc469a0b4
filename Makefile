# The two commands a newcomer needs:
#   make up    run the whole system locally (nats-server, materializer, gateway, simulator)
#   make test  lint, type-check and run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: up test setup lint bench clean

$(VENV)/.installed: pyproject.toml tests/gateway/audit/package-lock.json tests/gateway/sse/package-lock.json
	scripts/bootstrap
	@touch $@

setup: $(VENV)/.installed

up: setup
	$(VENV)/bin/pulse-bi dev

lint: setup
	$(VENV)/bin/ruff check pulse_bi materializer gateway tests bench
	$(VENV)/bin/ruff format --check pulse_bi materializer gateway tests bench
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

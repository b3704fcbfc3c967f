# The README's two commands: `make up` and `make test`.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: up test test-external-pg lint bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test]'
	@touch $(STAMP)

up: $(STAMP)
	bash scripts/runtime-deps.sh
	exec $(VENV)/bin/cloudfn up

test: $(STAMP)
	bash scripts/runtime-deps.sh
	bash scripts/test-deps.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

# The integration suite again, against a PostgreSQL started apart from the platform (TLS, non-superuser role).
test-external-pg: $(STAMP)
	bash scripts/runtime-deps.sh
	bash scripts/test-deps.sh
	bash scripts/with-external-pg.sh $(VENV)/bin/pytest -q tests/integration $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/python bench/throughput.py

clean:
	rm -rf $(VENV)

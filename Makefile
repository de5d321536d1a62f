# SCEP developer loop. `make demo` and `make test` are the two set-up commands of the README.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

PG_URL    ?= postgres://postgres@127.0.0.1:5432/scep
REDIS_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=

.PHONY: install demo test test-embedded test-services test-scale ci lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/scep demo

test: install
	@$(MAKE) --no-print-directory test-embedded
	@if $(BIN)/python -m scep.cli.services check "$(PG_URL)" "$(REDIS_URL)"; then \
		$(MAKE) --no-print-directory test-services; \
	else \
		echo "== PostgreSQL + Redis pass SKIPPED: servers not reachable (make ci requires them) =="; \
	fi

test-embedded: install
	@echo "== pass 1: embedded default (SQLite, filesystem broker) =="
	$(BIN)/pytest $(PYTEST_ARGS)

test-services: install
	@echo "== pass 2: PostgreSQL + Redis =="
	DATABASE_URL=$(PG_URL) CELERY_BROKER_URL=$(REDIS_URL) SCEP_REQUIRE_SERVICES=1 $(BIN)/pytest $(PYTEST_ARGS)

# The 100-concurrent-runs test (tests/scale, marker `scale`), on both configurations.
test-scale: install
	@echo "== scale: 100 runs on 4 workers, embedded and PostgreSQL + Redis =="
	SCEP_RUN_SCALE=1 $(BIN)/pytest tests/scale -m scale $(PYTEST_ARGS)
	DATABASE_URL=$(PG_URL) CELERY_BROKER_URL=$(REDIS_URL) SCEP_REQUIRE_SERVICES=1 \
		SCEP_RUN_SCALE=1 $(BIN)/pytest tests/scale -m scale $(PYTEST_ARGS)

ci: install
	bash .ci/start-services.sh
	$(BIN)/python -m scep.cli.services check "$(PG_URL)" "$(REDIS_URL)" --require
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test-embedded
	$(MAKE) --no-print-directory test-services
	$(MAKE) --no-print-directory test-scale

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf var/broker var/reports var/test_scep.sqlite3*

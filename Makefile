# novitai — the two commands: `make run` and `make test`. Everything else is here too.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SANDBOX_PORT ?= 8765
WEB_PORT ?= 8000
# `make run` listens on loopback only; WEB_HOST=0.0.0.0 (and ALLOWED_HOSTS) to serve others.
WEB_HOST ?= 127.0.0.1

.PHONY: help venv run test check lint format typecheck migrations-check schema compose-check \
        deploy-check flower bench chaos fuzz sandbox clean

help:
	@echo "make run      start novitai (web, worker, beat, and the Novita sandbox without NOVITA_API_KEY)"
	@echo "make test     run the test suite"
	@echo "make check    lint, format check, types, tests, migrations check, OpenAPI schema, deploy check"
	@echo "make flower   Celery Flower against the broker"
	@echo "make bench    benchmarks (figures in bench/results/)"
	@echo "make chaos    the chaos suite: faults against the whole stack, invariants checked (CHAOS_ARGS=--only NAME)"
	@echo "make fuzz     fuzz a running novitai against its OpenAPI schema (FUZZ_KEY=<api key>)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
	  || { echo "novitai needs Python 3.11 or newer (PYTHON=$(PYTHON))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# Embedded defaults unless DATABASE_URL / REDIS_URL / NOVITA_API_KEY say otherwise. The checkout's
# local profile (<NOVITAI_VAR_DIR>/local.env: a generated SECRET_KEY and ENCRYPTION_KEYS, and
# whether embedded mode runs its own Redis) is written first: manage.py and `make flower` read it
# too. FRESH=1 starts afresh: embedded mode's database, broker, caches, Redis and the sandbox's
# instances are deleted first (the secrets and the demo login are kept).
run: venv
	@profile=$$($(BIN)/python -m novitai.localenv) || exit 1; eval "$$profile"; \
	export DEBUG=$${DEBUG:-true} PROMETHEUS_MULTIPROC_DIR=$${PROMETHEUS_MULTIPROC_DIR:-$$NOVITAI_VAR_DIR/prometheus}; \
	if [ -n "$(FRESH)" ]; then \
	  echo "FRESH=1: deleting embedded mode's state in $$NOVITAI_VAR_DIR"; \
	  rm -rf "$$NOVITAI_VAR_DIR"/db.sqlite3* "$$NOVITAI_VAR_DIR"/broker.sqlite3* "$$NOVITAI_VAR_DIR"/cache \
	         "$$NOVITAI_VAR_DIR"/redis "$$NOVITAI_VAR_DIR"/sandbox "$$NOVITAI_VAR_DIR"/celerybeat-schedule* \
	         "$$NOVITAI_VAR_DIR"/locks; \
	fi; \
	rm -rf "$$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$$PROMETHEUS_MULTIPROC_DIR"; \
	if [ -z "$$NOVITA_API_KEY" ]; then \
	  export NOVITA_API_KEY=sandbox-key NOVITA_API_BASE_URL=http://127.0.0.1:$(SANDBOX_PORT)/gpu-instance/openapi/v1 \
	         WEBHOOK_ALLOW_PRIVATE_TARGETS=$${WEBHOOK_ALLOW_PRIVATE_TARGETS:-true}; \
	  procs="web worker events webhooks beat sandbox"; \
	  echo "NOVITA_API_KEY is not set: using the Novita sandbox on 127.0.0.1:$(SANDBOX_PORT)"; \
	else procs="web worker events webhooks beat"; fi; \
	if [ "$$EMBEDDED_REDIS" = true ]; then procs="redis $$procs"; fi; \
	$(BIN)/python manage.py migrate --noinput -v 0 && \
	$(BIN)/python manage.py bootstrap_demo && \
	export PATH="$(CURDIR)/$(BIN):$$PATH" WEB_HOST=$(WEB_HOST) WEB_PORT=$(WEB_PORT) SANDBOX_PORT=$(SANDBOX_PORT) \
	       NOVITAI_STARTED_AT=$$(date +%s) && \
	exec $(BIN)/honcho start -f Procfile $$procs

test: venv
	$(BIN)/pytest $(PYTEST_ARGS); status=$$?; [ $$status -eq 5 ] && exit 0 || exit $$status

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: venv
	DEBUG=true $(BIN)/mypy .

migrations-check: venv
	DEBUG=true $(BIN)/python manage.py makemigrations --check --dry-run

schema: venv
	DEBUG=true $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

compose-check: venv
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	@if command -v docker-compose >/dev/null 2>&1; then \
	  docker-compose -f docker-compose.yml config -q && echo "docker-compose config: ok"; \
	else echo "docker-compose not installed: validated against the Compose Specification schema only"; fi

# `manage.py check --deploy` with the settings of a production deployment: DEBUG off, a long
# random SECRET_KEY, a host name, HTTPS behind a TLS-terminating proxy, an encryption key
# (throwaway values).
deploy-check: venv
	@DEBUG=false SECRET_KEY="$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
	  ALLOWED_HOSTS=novitai.example.com CSRF_TRUSTED_ORIGINS=https://novitai.example.com \
	  SECURE_HTTPS=true SECURE_HSTS_PRELOAD=true SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https \
	  ENCRYPTION_KEYS="$$($(BIN)/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
	  $(BIN)/python manage.py check --deploy --fail-level WARNING

check: lint typecheck migrations-check schema compose-check deploy-check test

# On 127.0.0.1 (FLOWER_ADDRESS to change it); with DEBUG off it needs FLOWER_BASIC_AUTH. It needs
# Redis as the broker (REDIS_URL, or the one `make run` starts in embedded mode): it says so and
# stops on kombu's SQLAlchemy transport, which has no events, broadcast or queue lengths.
flower: venv
	DEBUG=$${DEBUG:-true} $(BIN)/celery -A novitai flower --port=$${FLOWER_PORT:-5555}

sandbox: venv
	$(BIN)/python -m novita_sandbox --port $(SANDBOX_PORT)

# Benchmarks need Postgres and Redis on 127.0.0.1 (started if they do not answer) and the bench
# extra (locust, py-spy, pyinstrument, psutil). BENCH_ARGS: e.g. --only burst --profile.
BENCH_STAMP := $(VENV)/.bench-installed-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# The chaos suite (README "Reliability"): its own Postgres cluster and Redis on free ports, the
# sandbox, gunicorn and the Procfile's Celery processes, all on 127.0.0.1; about 10 minutes.
# Fails (exit 1) when an invariant or a target does not hold. CHAOS_ARGS: e.g. --only redis,e.
CHAOS_STAMP := $(VENV)/.chaos-installed-stamp
$(CHAOS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,chaos]'
	@touch $(CHAOS_STAMP)

chaos: $(CHAOS_STAMP)
	$(BIN)/python -m chaos $(CHAOS_ARGS)

# Fuzzing: schemathesis (the fuzz extra) against a running novitai, every operation and check
# (schemathesis.toml: the few turned off for some operations, and why; no --checks on the
# command line, which would override it). `make run` elsewhere, then
# FUZZ_KEY=<the api_key it prints> make fuzz. FUZZ_URL (default http://127.0.0.1:$(WEB_PORT));
# FUZZ_ARGS: e.g. --max-examples 200, --phases fuzzing, --seed N.
FUZZ_STAMP := $(VENV)/.fuzz-installed-stamp
FUZZ_URL ?= http://127.0.0.1:$(WEB_PORT)
$(FUZZ_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,fuzz]'
	@touch $(FUZZ_STAMP)

fuzz: $(FUZZ_STAMP)
	@test -n "$$FUZZ_KEY" || { echo "FUZZ_KEY is not set: a tenant API key (make run prints one)"; exit 2; }
	$(BIN)/schemathesis run $(FUZZ_URL)/api/schema/ --url $(FUZZ_URL) \
	  --header "Authorization: Bearer $$FUZZ_KEY" --wait-for-schema 30 $(FUZZ_ARGS)

clean:
	rm -rf var/ .mypy_cache .ruff_cache

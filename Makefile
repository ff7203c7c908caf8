# Quick start: `make demo` sets up and runs the demo, `make test` runs the test suite.
# Django 6 needs Python 3.12+; `python3` may be older, so look for a suitable interpreter
# (PATH first, then pyenv's installs). Override with `make PYTHON=/path/to/python3.12`.
PYTHON ?= $(shell for p in python3.13 python3.12 python3 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null); do \
	"$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
POSTGRES_TEST_URL ?= postgres://postgres@127.0.0.1:5432/smscampaigns

PORT ?= 8000

.PHONY: install demo run serve-prod test test-postgres test-all lint clean lock

$(BIN)/.installed: pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "error: Python 3.12 or newer is required (set PYTHON=/path/to/python3.12)"; exit 1; }
	@test -x $(BIN)/python || "$(PYTHON)" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $@

install: $(BIN)/.installed ## create .venv and install pinned dependencies

demo: install ## migrate, seed sample data and show what is there
	@test -f .env || { cp .env.example .env && echo "Created .env from .env.example (DEBUG=true, SQLite)."; }
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py seed_demo --send

run: install ## development server on http://127.0.0.1:$(PORT)/admin/ (make run PORT=8001), plus a worker that sends
	@# Campaigns sent or scheduled from the admin go out through run_worker; Ctrl-C stops both.
	@$(BIN)/python manage.py run_worker & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT; \
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

serve-prod: install ## production start on $(PORT): migrate, collectstatic, gunicorn + run_worker (or Celery)
	@# Reads .env (or ENV_FILE) like every command: DEBUG=false and the production settings.
	$(BIN)/python manage.py serve --port $(PORT)

test: install ## the whole suite on SQLite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: install ## the whole suite on PostgreSQL ($(POSTGRES_TEST_URL))
	DATABASE_URL=$(POSTGRES_TEST_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: test test-postgres

lint: install ## ruff, Django's checks, and no missing migrations
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_SETTINGS_MODULE=smscampaigns.settings_test $(BIN)/python manage.py check
	DJANGO_SETTINGS_MODULE=smscampaigns.settings_test $(BIN)/python manage.py makemigrations --check --dry-run
	DJANGO_SETTINGS_MODULE=smscampaigns.settings_test $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null
	@# As a deploy does: collect the static files (into a scratch STATIC_ROOT), then
	@# check --deploy, which fails without them.
	static=$$(mktemp -d) && trap 'rm -rf "$$static"' EXIT && \
	export ENV_FILE=/dev/null SECRET_KEY=check-deploy-only-$$(date +%s)-0123456789abcdefghijklmnopqrstuvwxyz DEBUG=false \
		ALLOWED_HOSTS=sms.example.com PUBLIC_BASE_URL=https://sms.example.com STATIC_ROOT="$$static" && \
	$(BIN)/python manage.py collectstatic --no-input --verbosity 0 && \
	$(BIN)/python manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) db.sqlite3

lock: install ## re-pin requirements.lock to what is installed
	{ echo '# Pinned versions for reproducible installs: pip install -c requirements.lock -e ".[dev]"'; \
	  echo '# Regenerate after changing pyproject.toml: make lock'; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e'; } > requirements.lock

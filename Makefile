# Aporta: `make run` serves the demo on SQLite; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
export FLASK_APP := wsgi.py

.PHONY: run test test-postgres serve migrate debian-packages lint clean

$(BIN)/activate: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(BIN)/activate

## Serve the forum with the demo consultation on SQLite (instance/aporta.sqlite3).
run: $(BIN)/activate
	$(BIN)/flask db upgrade heads
	$(BIN)/flask seed-demo --if-empty
	$(BIN)/flask run --host $(HOST) --port $(PORT)

## Run the whole test suite (SQLite; set DATABASE_URL for PostgreSQL).
test: $(BIN)/activate
	$(BIN)/python -m pytest

## The same suite on the local PostgreSQL database `test`.
test-postgres: $(BIN)/activate
	DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test $(BIN)/python -m pytest

## Production: apply migrations explicitly, then serve with gunicorn (see README).
migrate: $(BIN)/activate
	$(BIN)/flask db upgrade heads

serve: $(BIN)/activate
	$(BIN)/gunicorn --config gunicorn.conf.py wsgi:app

## Debian packages the browser and IMAP tests need (run as root).
debian-packages:
	bash scripts/install-debian-packages.sh

lint: $(BIN)/activate
	$(BIN)/ruff check forum tests bench
	$(BIN)/ruff format --check forum tests bench

clean:
	rm -rf $(VENV) .pytest_cache

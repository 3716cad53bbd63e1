"""Shared fixtures: one app and one migrated database per run, emptied after each test.

The database is SQLite in a temporary folder, or PostgreSQL when DATABASE_URL is set.
The schema is built by the migrations, never by create_all.
"""

import os
import re
import shutil
import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import event, text
from werkzeug.serving import make_server

from forum import clock, create_app
from forum.consultation import views as consultation_views
from forum.consultation.visits import visits
from forum.extensions import db, limiter
from forum.moderation import services as moderation_services

REQUIRE_SERVICES = os.environ.get("APORTA_REQUIRE_SERVICES") == "1"


def require_service(available: bool, what: str) -> None:
    """Skip a test whose service is missing; in CI (APORTA_REQUIRE_SERVICES=1) fail instead."""
    if available:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {what}")
    pytest.skip(f"service missing: {what}")


def _database_url(tmp_path_factory) -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.sqlite3")


def _reset_postgres_schema(app: Flask) -> None:
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))


class IsolatedClient(FlaskClient):
    """A test client whose every request gets its own app context, like a real server.

    Tests keep an app context open for factories; without this, requests would share
    its `g` (CSRF tokens) and its database session.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture(scope="session")
def app(tmp_path_factory) -> Iterator[Flask]:
    instance = tmp_path_factory.mktemp("instance")
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
            "SQLALCHEMY_DATABASE_URI": _database_url(tmp_path_factory),
            "BASE_URL": "http://localhost",
            "SERVER_NAME": None,
            "PAGE_CACHE_SECONDS": 0,  # tests read their own writes; one test turns it on
        }
    )
    app.instance_path = str(instance)
    app.test_client_class = IsolatedClient
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        _reset_postgres_schema(app)
    with app.app_context():
        upgrade(revision="heads")
    yield app
    with app.app_context():
        db.engine.dispose()
    shutil.rmtree(instance, ignore_errors=True)


def _empty_database() -> None:
    db.session.remove()
    tables = [table.name for table in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(autouse=True)
def _clean_state(app: Flask) -> Iterator[None]:
    """Every test starts with an empty database, a running clock and fresh limits."""
    saved_config = dict(app.config)
    ctx = app.app_context()
    ctx.push()
    yield
    db.session.remove()
    visits.flush()
    _empty_database()
    limiter.reset()
    consultation_views._thread_cache.clear()
    moderation_services._similarity_cache.clear()  # ids restart in the emptied tables
    app.extensions.pop("aporta_page_cache", None)
    clock.travel_to(None)
    ctx.pop()
    app.config.clear()
    app.config.update(saved_config)


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


@pytest.fixture
def csrf_on(app: Flask):
    """Turn CSRF protection on (it is on in every environment but a test client's)."""
    app.config["WTF_CSRF_ENABLED"] = True
    return app


@pytest.fixture
def no_csrf(app: Flask):
    app.config["WTF_CSRF_ENABLED"] = False
    return app


_CSRF = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


def csrf_token(html: str) -> str:
    """The CSRF token of the first form in a page."""
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1) or match.group(2)


def form_post(client, page_url: str, post_url: str | None, data: dict, follow: bool = False):
    """GET a page, take its CSRF token, and POST the form as a browser would."""
    page = client.get(page_url)
    payload = {"csrf_token": csrf_token(page.get_data(as_text=True)), **data}
    return client.post(post_url or page_url, data=payload, follow_redirects=follow)


def login(client, email: str, password: str = "contraseña-segura-1"):
    return form_post(
        client, "/cuenta/entrar", None, {"email": email, "password": password}, follow=False
    )


class QueryCounter:
    """Counts the SQL statements run while it is active."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.statements.append(statement)

    def __enter__(self) -> "QueryCounter":
        event.listen(db.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(db.engine, "before_cursor_execute", self)


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app served on 127.0.0.1 in a thread, for the browser; stopped after the test."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)

"""Shared by the moderation benchmarks: an app on a scratch database and a fast bulk loader.

SQLite: a file in /tmp. PostgreSQL: a schema of its own inside the database named by
--postgres (the tests' `DROP SCHEMA public` never touches it). The schema is built by the
migrations, as everywhere else; rows go in with executemany (SQLite) or COPY (PostgreSQL).
"""

import os
import statistics
import time
from collections.abc import Callable, Iterable, Sequence

from flask_migrate import upgrade
from sqlalchemy import text

from forum import create_app
from forum.extensions import db


def make_app(kind: str, postgres_url: str, name: str, keep: bool = False):
    """An app on a scratch database ('sqlite' or 'postgresql'), migrated to heads.

    The database is emptied first, unless `keep` (to measure again what a run loaded).
    """
    if kind == "sqlite":
        path = f"/tmp/{name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix) and not keep:
                os.remove(path + suffix)
        config = {"SQLALCHEMY_DATABASE_URI": "sqlite:///" + path}
    else:
        config = {
            "SQLALCHEMY_DATABASE_URI": postgres_url,
            "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"options": f"-c search_path={name}"}},
        }
    app = create_app({"TESTING": True, "SECRET_KEY": "bench-" + "x" * 40, **config})
    with app.app_context():
        if kind == "postgresql" and not keep:
            with db.engine.begin() as connection:
                connection.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
                connection.execute(text(f"CREATE SCHEMA {name}"))
        upgrade(revision="heads")
    return app


def bulk_load(table, columns: Sequence[str], rows: Iterable[tuple], batch: int = 50_000) -> None:
    """Insert many rows: COPY on PostgreSQL, executemany in batches on SQLite."""
    connection = db.engine.raw_connection()
    try:
        if db.engine.dialect.name == "postgresql":
            cursor = connection.cursor()
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor = connection.cursor()
            marks = ", ".join("?" * len(columns))
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            chunk = []
            for row in rows:
                chunk.append(row)
                if len(chunk) >= batch:
                    cursor.executemany(sql, chunk)
                    chunk = []
            if chunk:
                cursor.executemany(sql, chunk)
        connection.commit()
    finally:
        connection.close()


def analyse() -> None:
    """Refresh the planner's statistics after a bulk load."""
    with db.engine.begin() as connection:
        connection.execute(text("ANALYZE"))


def timed(action: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    """Median wall time in milliseconds over `repeat` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result

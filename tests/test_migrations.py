"""The schema the migrations build is the one the models describe."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from forum.dbtypes import UTCDateTime
from forum.extensions import db


def _compare_type(context, inspected_column, metadata_column, inspected_type, metadata_type):
    if isinstance(metadata_type, UTCDateTime):
        return False  # stored as a plain DateTime by design
    return None


def test_migrated_schema_matches_the_models():
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": _compare_type, "render_as_batch": True}
        )
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout():
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas only apply to SQLite")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1

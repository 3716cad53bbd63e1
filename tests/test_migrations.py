"""The schema the migrations build is the one the models describe."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, select

from forum.consultation.models import Contribution
from forum.dbtypes import UTCDateTime
from forum.extensions import db
from forum.moderation import services
from tests.factories import draft, make_comment, make_consultation, make_user


def _compare_type(context, inspected_column, metadata_column, inspected_type, metadata_type):
    if isinstance(metadata_type, UTCDateTime):
        return False  # stored as a plain DateTime by design
    return None


# On SQLite the queue's free-text search is an FTS5 table with its shadow tables (and
# triggers, which autogenerate does not read), created by migration 0008 and not
# described by the models; the trigram index it replaces exists on PostgreSQL only.
SQLITE_ONLY_SEARCH_TABLES = {
    "contributions_search",
    "contributions_search_config",
    "contributions_search_data",
    "contributions_search_docsize",
    "contributions_search_idx",
}
POSTGRESQL_ONLY_INDEX = "ix_contributions_search_text_trgm"


def _include_object(obj, name, type_, reflected, compare_to):
    if db.engine.dialect.name != "sqlite":
        return True
    if type_ == "table":
        return name not in SQLITE_ONLY_SEARCH_TABLES
    return not (type_ == "index" and name == POSTGRESQL_ONLY_INDEX)


def test_migrated_schema_matches_the_models():
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": _compare_type,
                "render_as_batch": True,
                "include_object": _include_object,
            },
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


def test_the_text_search_migration_fills_existing_rows_and_downgrades_cleanly():
    make_consultation()
    comment_id = make_comment(draft(), make_user(), "Educación RURAL, ya.").id
    db.session.commit()
    db.session.remove()
    try:
        downgrade(revision="0007_sender_profile")
        schema = inspect(db.engine)
        assert "search_text" not in {c["name"] for c in schema.get_columns("contributions")}
        assert "contributions_search" not in schema.get_table_names()
        assert "ix_contributions_search_text_trgm" not in {
            i["name"] for i in schema.get_indexes("contributions")
        }
    finally:
        upgrade(revision="heads")
    stored = db.session.scalar(
        select(Contribution.search_text).where(Contribution.id == comment_id)
    )
    assert stored == "educacion rural ya"
    found = services.filter_queue(services.QueueFilter(text="educacion"))
    assert [c.id for c in found.items] == [comment_id]

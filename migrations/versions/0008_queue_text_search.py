"""queue text search: contributions.search_text, indexed by trigrams (pg_trgm GIN; SQLite FTS5)

Revision ID: 0008_queue_text_search
Revises: 0007_sender_profile
Create Date: 2026-11-22 09:50:00.000000

`search_text` holds body, synthesis and author_name folded by `forum.text.search_texts`
(lower case, accents folded, ñ kept, punctuation collapsed); the app keeps it up to date
(a listener on Contribution). Existing rows are filled here, in batches, by that same
function: the one place where a revision imports app code, so the stored text is exactly
what the app writes and what the queue's search folds the user's words into.

PostgreSQL: the pg_trgm extension (CREATE privilege on the database needed, see
docs/moderation.md) and a GIN trigram index, which serves `LIKE '%word%'`.
SQLite: an FTS5 table with the trigram tokenizer over `contributions.search_text`
(external content: it stores only the index) kept in sync by three triggers. A later
revision that rebuilds `contributions` on SQLite (batch mode) drops those triggers with the
old table and must create them again; tests/test_moderation.py would catch it.
"""
from alembic import op
import sqlalchemy as sa

from forum.text import search_texts


# revision identifiers, used by Alembic.
revision = '0008_queue_text_search'
down_revision = '0007_sender_profile'
branch_labels = None
depends_on = None

BATCH = 5_000

SQLITE_SEARCH = [
    # detail='none': the index keeps which rows hold each trigram, not where; SQLite then
    # checks each candidate's LIKE against contributions.search_text. A third of the size.
    "CREATE VIRTUAL TABLE contributions_search USING fts5(search_text, "
    "content='contributions', content_rowid='id', tokenize='trigram', detail='none')",
    "CREATE TRIGGER contributions_search_insert AFTER INSERT ON contributions BEGIN "
    "INSERT INTO contributions_search (rowid, search_text) VALUES (new.id, new.search_text); "
    "END",
    "CREATE TRIGGER contributions_search_delete AFTER DELETE ON contributions BEGIN "
    "INSERT INTO contributions_search (contributions_search, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); "
    "END",
    "CREATE TRIGGER contributions_search_update AFTER UPDATE OF search_text ON contributions "
    "BEGIN "
    "INSERT INTO contributions_search (contributions_search, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); "
    "INSERT INTO contributions_search (rowid, search_text) VALUES (new.id, new.search_text); "
    "END",
    "INSERT INTO contributions_search (contributions_search) VALUES ('rebuild')",
]


def _fill_search_text(connection) -> None:
    """Fold the searched fields of every existing contribution, BATCH rows at a time."""
    read = sa.text(
        "SELECT id, body, synthesis, author_name FROM contributions "
        "WHERE id > :after ORDER BY id LIMIT :batch"
    )
    write = sa.text("UPDATE contributions SET search_text = :search_text WHERE id = :id")
    after = 0
    while rows := connection.execute(read, {"after": after, "batch": BATCH}).all():
        folded = search_texts([(body or "", synthesis or "", name or "") for _, body, synthesis, name in rows])
        connection.execute(
            write, [{"id": row[0], "search_text": text} for row, text in zip(rows, folded)]
        )
        after = rows[-1][0]


def upgrade():
    op.add_column(
        'contributions', sa.Column('search_text', sa.Text(), server_default='', nullable=False)
    )
    connection = op.get_bind()
    _fill_search_text(connection)
    if connection.dialect.name == 'postgresql':
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        # The operator class is named with the extension's schema: an extension installed
        # earlier (by a superuser, or for another schema) may live off our search_path.
        trgm_schema = connection.execute(
            sa.text(
                "SELECT extnamespace::regnamespace::text FROM pg_extension "
                "WHERE extname = 'pg_trgm'"
            )
        ).scalar_one()
        op.create_index(
            'ix_contributions_search_text_trgm',
            'contributions',
            ['search_text'],
            postgresql_using='gin',
            postgresql_ops={'search_text': f'{trgm_schema}.gin_trgm_ops'},
        )
    else:
        for statement in SQLITE_SEARCH:
            op.execute(statement)


def downgrade():
    # pg_trgm stays installed: other schemas may use it, and dropping it needs the privilege.
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_contributions_search_text_trgm', table_name='contributions')
    else:
        # IF EXISTS: a later revision's batch downgrade, run before this one, rebuilds
        # contributions on SQLite and takes these triggers with the old table.
        for trigger in ('insert', 'delete', 'update'):
            op.execute(f'DROP TRIGGER IF EXISTS contributions_search_{trigger}')
        op.execute('DROP TABLE contributions_search')
    op.drop_column('contributions', 'search_text')

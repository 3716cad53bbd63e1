"""duplicate signatures: each contribution's MinHash signature and normalised-text hash, per text version

Revision ID: 0005_duplicate_signatures
Revises: 0004_moderation_queue_indexes
Create Date: 2026-11-22 09:50:00.000000

Near-duplicate suggestions read the stored signatures instead of normalising and hashing
every contribution again after each restart or change; missing or outdated rows (body
edited since) are filled in lazily by `forum.moderation.services`, so no data step here.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005_duplicate_signatures'
down_revision = '0004_moderation_queue_indexes'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('contribution_signatures',
    sa.Column('contribution_id', sa.Integer(), nullable=False),
    sa.Column('body_edited_at', sa.DateTime(), nullable=True),
    sa.Column('text_hash', sa.LargeBinary(), nullable=True),
    sa.Column('signature', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['contribution_id'], ['contributions.id'], name=op.f('fk_contribution_signatures_contribution_id_contributions')),
    sa.PrimaryKeyConstraint('contribution_id', name=op.f('pk_contribution_signatures'))
    )


def downgrade():
    op.drop_table('contribution_signatures')

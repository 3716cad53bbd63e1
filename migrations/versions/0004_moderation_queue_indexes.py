"""moderation queue indexes: each filter then received_at, id; users by organisation type and region

Revision ID: 0004_moderation_queue_indexes
Revises: 0003_ingest
Create Date: 2026-11-22 07:10:04.668716

The moderation queue filters by one of these columns and lists newest first; each index
serves one filter and the order, so no common filter scans the whole table.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_moderation_queue_indexes'
down_revision = '0003_ingest'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('contributions', schema=None) as batch_op:
        batch_op.create_index('ix_contributions_channel_received', ['channel', 'received_at', 'id'], unique=False)
        batch_op.create_index('ix_contributions_disposition_received', ['disposition', 'received_at', 'id'], unique=False)
        batch_op.create_index('ix_contributions_draft_received', ['draft_id', 'received_at', 'id'], unique=False)
        batch_op.create_index('ix_contributions_late_received', ['is_late', 'received_at', 'id'], unique=False)
        batch_op.create_index('ix_contributions_received_id', ['received_at', 'id'], unique=False)
        batch_op.create_index('ix_contributions_state_received', ['moderation_state', 'received_at', 'id'], unique=False)
        batch_op.create_index('ix_contributions_theme_received', ['theme_id', 'received_at', 'id'], unique=False)

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index('ix_users_organisation_type', ['organisation_type'], unique=False)
        batch_op.create_index('ix_users_region', ['region'], unique=False)



def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index('ix_users_region')
        batch_op.drop_index('ix_users_organisation_type')

    with op.batch_alter_table('contributions', schema=None) as batch_op:
        batch_op.drop_index('ix_contributions_theme_received')
        batch_op.drop_index('ix_contributions_state_received')
        batch_op.drop_index('ix_contributions_received_id')
        batch_op.drop_index('ix_contributions_late_received')
        batch_op.drop_index('ix_contributions_draft_received')
        batch_op.drop_index('ix_contributions_disposition_received')
        batch_op.drop_index('ix_contributions_channel_received')


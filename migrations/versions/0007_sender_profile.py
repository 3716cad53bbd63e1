"""sender profile: organisation, type and region of e-mail senders without an account

Revision ID: 0007_sender_profile
Revises: 0006_export_jobs
Create Date: 2026-11-22 09:46:29.739745

A moderator records what an e-mail's signature says of a sender without an account, so
they count in the participation tables and the queue's filters; existing rows get ''.
The index on author_email finds a sender's other contributions.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_sender_profile'
down_revision = '0006_export_jobs'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('contributions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sender_organisation', sa.String(length=200), nullable=False, server_default=sa.text("''")))
        batch_op.add_column(sa.Column('sender_organisation_type', sa.String(length=40), nullable=False, server_default=sa.text("''")))
        batch_op.add_column(sa.Column('sender_region', sa.String(length=40), nullable=False, server_default=sa.text("''")))
        batch_op.create_index('ix_contributions_author_email', ['author_email'], unique=False)



def downgrade():
    with op.batch_alter_table('contributions', schema=None) as batch_op:
        batch_op.drop_index('ix_contributions_author_email')
        batch_op.drop_column('sender_region')
        batch_op.drop_column('sender_organisation_type')
        batch_op.drop_column('sender_organisation')


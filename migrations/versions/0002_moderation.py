"""moderation: tags, groups, reports, duplicate decisions, audit log; moderation and response fields on contributions

Revision ID: 0002_moderation
Revises: 0001_forum_core
Create Date: 2026-11-22 07:04:34.555594

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002_moderation'
down_revision = '0001_forum_core'
branch_labels = None
depends_on = None


def upgrade():

    op.create_table('tags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=80), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tags')),
    sa.UniqueConstraint('slug', name=op.f('uq_tags_slug'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=60), nullable=False),
    sa.Column('target_type', sa.String(length=40), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=True),
    sa.Column('before', sa.Text(), nullable=False),
    sa.Column('after', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_audit_log_actor_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_actor_id'), ['actor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)
        batch_op.create_index('ix_audit_log_target', ['target_type', 'target_id'], unique=False)

    op.create_table('contribution_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('consultation_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('synthesis', sa.Text(), nullable=False, server_default=sa.text("''")),
    sa.Column('disposition', sa.String(length=30), nullable=False, server_default=sa.text("'pendiente'")),
    sa.Column('response', sa.Text(), nullable=False, server_default=sa.text("''")),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], name=op.f('fk_contribution_groups_consultation_id_consultations')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_contribution_groups_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contribution_groups'))
    )
    with op.batch_alter_table('contribution_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contribution_groups_consultation_id'), ['consultation_id'], unique=False)

    op.create_table('contribution_tags',
    sa.Column('contribution_id', sa.Integer(), nullable=False),
    sa.Column('tag_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['contribution_id'], ['contributions.id'], name=op.f('fk_contribution_tags_contribution_id_contributions')),
    sa.ForeignKeyConstraint(['tag_id'], ['tags.id'], name=op.f('fk_contribution_tags_tag_id_tags')),
    sa.PrimaryKeyConstraint('contribution_id', 'tag_id', name=op.f('pk_contribution_tags'))
    )
    with op.batch_alter_table('contribution_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contribution_tags_tag_id'), ['tag_id'], unique=False)

    op.create_table('duplicate_decisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('first_id', sa.Integer(), nullable=False),
    sa.Column('second_id', sa.Integer(), nullable=False),
    sa.Column('is_duplicate', sa.Boolean(), nullable=False),
    sa.Column('decided_at', sa.DateTime(), nullable=False),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_duplicate_decisions_decided_by_id_users')),
    sa.ForeignKeyConstraint(['first_id'], ['contributions.id'], name=op.f('fk_duplicate_decisions_first_id_contributions')),
    sa.ForeignKeyConstraint(['second_id'], ['contributions.id'], name=op.f('fk_duplicate_decisions_second_id_contributions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_duplicate_decisions')),
    sa.UniqueConstraint('first_id', 'second_id', name=op.f('uq_duplicate_decisions_first_id'))
    )
    with op.batch_alter_table('duplicate_decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_duplicate_decisions_second_id'), ['second_id'], unique=False)

    op.create_table('reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contribution_id', sa.Integer(), nullable=False),
    sa.Column('reporter_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('resolved_at', sa.DateTime(), nullable=True),
    sa.Column('resolved_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['contribution_id'], ['contributions.id'], name=op.f('fk_reports_contribution_id_contributions')),
    sa.ForeignKeyConstraint(['reporter_id'], ['users.id'], name=op.f('fk_reports_reporter_id_users')),
    sa.ForeignKeyConstraint(['resolved_by_id'], ['users.id'], name=op.f('fk_reports_resolved_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reports')),
    sa.UniqueConstraint('contribution_id', 'reporter_id', name=op.f('uq_reports_contribution_id'))
    )
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reports_contribution_id'), ['contribution_id'], unique=False)

    with op.batch_alter_table('consultations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('responses_published_at', sa.DateTime(), nullable=True))

    with op.batch_alter_table('contributions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('forwarded_by', sa.String(length=254), nullable=False, server_default=sa.text("''")))
        batch_op.add_column(sa.Column('hidden_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('hidden_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('moderator_note', sa.Text(), nullable=False, server_default=sa.text("''")))
        batch_op.add_column(sa.Column('synthesis', sa.Text(), nullable=False, server_default=sa.text("''")))
        batch_op.add_column(sa.Column('disposition', sa.String(length=30), nullable=False, server_default=sa.text("'pendiente'")))
        batch_op.add_column(sa.Column('response', sa.Text(), nullable=False, server_default=sa.text("''")))
        batch_op.add_column(sa.Column('group_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_contributions_disposition'), ['disposition'], unique=False)
        batch_op.create_index(batch_op.f('ix_contributions_group_id'), ['group_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_contributions_hidden_by_id_users'), 'users', ['hidden_by_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_contributions_group_id_contribution_groups'), 'contribution_groups', ['group_id'], ['id'])




def downgrade():

    with op.batch_alter_table('contributions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_contributions_group_id_contribution_groups'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_contributions_hidden_by_id_users'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_contributions_group_id'))
        batch_op.drop_index(batch_op.f('ix_contributions_disposition'))
        batch_op.drop_column('group_id')
        batch_op.drop_column('response')
        batch_op.drop_column('disposition')
        batch_op.drop_column('synthesis')
        batch_op.drop_column('moderator_note')
        batch_op.drop_column('hidden_by_id')
        batch_op.drop_column('hidden_at')
        batch_op.drop_column('forwarded_by')

    with op.batch_alter_table('consultations', schema=None) as batch_op:
        batch_op.drop_column('responses_published_at')

    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reports_contribution_id'))

    op.drop_table('reports')
    with op.batch_alter_table('duplicate_decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_duplicate_decisions_second_id'))

    op.drop_table('duplicate_decisions')
    with op.batch_alter_table('contribution_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contribution_tags_tag_id'))

    op.drop_table('contribution_tags')
    with op.batch_alter_table('contribution_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contribution_groups_consultation_id'))

    op.drop_table('contribution_groups')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_target')
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))
        batch_op.drop_index(batch_op.f('ix_audit_log_actor_id'))
        batch_op.drop_index(batch_op.f('ix_audit_log_action'))

    op.drop_table('audit_log')
    op.drop_table('tags')


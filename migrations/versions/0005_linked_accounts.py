"""profiles: third-party accounts linked by a person (encrypted tokens)

Revision ID: 0005
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

import consent.database

revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "linked_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("integration", sa.String(length=40), nullable=False),
        sa.Column("token_sealed", sa.Text(), nullable=True),
        sa.Column("authorized_at", consent.database.UTCDateTime(), nullable=False),
        sa.Column("deauthorized_at", consent.database.UTCDateTime(), nullable=True),
        sa.Column("token_deleted_at", consent.database.UTCDateTime(), nullable=True),
        sa.Column("grant_event_id", sa.String(length=32), nullable=True),
        sa.Column("withdraw_event_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_linked_accounts_site_id_sites")),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"],
                                name=op.f("fk_linked_accounts_subject_id_subjects")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_linked_accounts")),
    )
    with op.batch_alter_table("linked_accounts", schema=None) as batch_op:
        batch_op.create_index("ix_linked_accounts_site_subject", ["site_id", "subject_id"],
                              unique=False)


def downgrade():
    with op.batch_alter_table("linked_accounts", schema=None) as batch_op:
        batch_op.drop_index("ix_linked_accounts_site_subject")
    op.drop_table("linked_accounts")

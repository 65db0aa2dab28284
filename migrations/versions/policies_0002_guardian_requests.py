"""policies: guardian requests (a minor's grants wait for a guardian's signed link)

Revision ID: policies_0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

import consent.database

revision = "policies_0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "guardian_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("address_sealed", sa.Text(), nullable=True),
        sa.Column("created_at", consent.database.UTCDateTime(), nullable=False),
        sa.Column("expires_at", consent.database.UTCDateTime(), nullable=False),
        sa.Column("decided_at", consent.database.UTCDateTime(), nullable=True),
        sa.Column("decision_event_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_guardian_requests_site_id_sites")),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"],
                                name=op.f("fk_guardian_requests_subject_id_subjects")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardian_requests")),
    )
    with op.batch_alter_table("guardian_requests", schema=None) as batch_op:
        batch_op.create_index("ix_guardian_requests_site_subject", ["site_id", "subject_id"],
                              unique=False)


def downgrade():
    op.drop_table("guardian_requests")

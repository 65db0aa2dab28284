"""policies: suppression records (opt-outs kept as keyed hashes when a person is erased)

Revision ID: policies_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

import consent.database

revision = "policies_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "suppression_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("ref_kind", sa.String(length=8), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("opted_out_at", consent.database.UTCDateTime(), nullable=True),
        sa.Column("kept_at", consent.database.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_suppression_records_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppression_records")),
        sa.UniqueConstraint("site_id", "ref_kind", "ref", "channel",
                            name=op.f("uq_suppression_records_site_id_ref_kind_ref_channel")),
    )


def downgrade():
    op.drop_table("suppression_records")

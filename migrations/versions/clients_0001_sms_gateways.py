"""clients: SMS gateways of a site (inbound token hash, encrypted signing secret)

Revision ID: clients_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

from consent.database import UTCDateTime

revision = "clients_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "sms_gateways",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("signing_secret", sa.Text(), nullable=True),
        sa.Column("signature_method", sa.String(length=16), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_sms_gateways_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_gateways")),
        sa.UniqueConstraint("site_id", "provider", name=op.f("uq_sms_gateways_site_id_provider")),
    )


def downgrade():
    op.drop_table("sms_gateways")

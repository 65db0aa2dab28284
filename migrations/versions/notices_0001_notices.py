"""notices: what each widget decision's visitor was shown, kept under its SHA-256

Revision ID: notices_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

import consent.database  # noqa: F401  (custom column types)
from consent.notices import drop_notice_ddl, notice_ddl

revision = "notices_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.String(length=16), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("region", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("first_at", consent.database.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_notices_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
        sa.UniqueConstraint("site_id", "revision", "locale", "region", "digest",
                            name=op.f("uq_notices_site_id_revision_locale_region_digest")),
    )
    op.create_index("ix_notices_site_digest", "notices", ["site_id", "digest"])
    for statement in notice_ddl(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade():
    for statement in drop_notice_ddl(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_index("ix_notices_site_digest", table_name="notices")
    op.drop_table("notices")

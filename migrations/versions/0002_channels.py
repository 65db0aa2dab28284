"""channels: address refs, visitor-to-user links, spent login links

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

import consent.database

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "channel_addresses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("medium", sa.String(length=8), nullable=False),
        sa.Column("address_ref", sa.String(length=64), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("created_at", consent.database.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_channel_addresses_site_id_sites")),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"],
                                name=op.f("fk_channel_addresses_subject_id_subjects")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_addresses")),
        sa.UniqueConstraint("site_id", "medium", "address_ref",
                            name=op.f("uq_channel_addresses_site_id_medium_address_ref")),
    )
    with op.batch_alter_table("channel_addresses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_channel_addresses_subject_id"), ["subject_id"],
                              unique=False)

    op.create_table(
        "subject_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=True),
        sa.Column("linked_at", consent.database.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_subject_links_site_id_sites")),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"],
                                name=op.f("fk_subject_links_subject_id_subjects")),
        sa.ForeignKeyConstraint(["account_id"], ["subjects.id"],
                                name=op.f("fk_subject_links_account_id_subjects")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_links")),
        sa.UniqueConstraint("subject_id", "account_id",
                            name=op.f("uq_subject_links_subject_id_account_id")),
    )
    with op.batch_alter_table("subject_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subject_links_site_id"), ["site_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_subject_links_account_id"), ["account_id"],
                              unique=False)

    op.create_table(
        "login_link_uses",
        sa.Column("jti", sa.String(length=32), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("used_at", consent.database.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_login_link_uses_site_id_sites")),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_login_link_uses")),
    )
    with op.batch_alter_table("login_link_uses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_link_uses_used_at"), ["used_at"],
                              unique=False)


def downgrade():
    with op.batch_alter_table("login_link_uses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_link_uses_used_at"))
    op.drop_table("login_link_uses")
    with op.batch_alter_table("subject_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subject_links_account_id"))
        batch_op.drop_index(batch_op.f("ix_subject_links_site_id"))
    op.drop_table("subject_links")
    with op.batch_alter_table("channel_addresses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_channel_addresses_subject_id"))
    op.drop_table("channel_addresses")

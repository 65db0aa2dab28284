"""admin and audit: admin users, API tokens, access and erasure requests

Revision ID: 0003
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

import consent.database

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "admin_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("failed_sign_ins", sa.Integer(), nullable=False),
        sa.Column("locked_until", consent.database.UTCDateTime(), nullable=True),
        sa.Column("last_sign_in_at", consent.database.UTCDateTime(), nullable=True),
        sa.Column("disabled_at", consent.database.UTCDateTime(), nullable=True),
        sa.Column("created_at", consent.database.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_users")),
        sa.UniqueConstraint("email", name=op.f("uq_admin_users_email")),
    )
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", consent.database.UTCDateTime(), nullable=False),
        sa.Column("expires_at", consent.database.UTCDateTime(), nullable=True),
        sa.Column("last_used_at", consent.database.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", consent.database.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_admin_tokens_site_id_sites")),
        sa.ForeignKeyConstraint(["created_by"], ["admin_users.id"],
                                name=op.f("fk_admin_tokens_created_by_admin_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_tokens")),
        sa.UniqueConstraint("prefix", name=op.f("uq_admin_tokens_prefix")),
    )
    op.create_table(
        "data_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", consent.database.UTCDateTime(), nullable=False),
        sa.Column("due_at", consent.database.UTCDateTime(), nullable=False),
        sa.Column("deadline_rule", sa.String(length=40), nullable=False),
        sa.Column("completed_at", consent.database.UTCDateTime(), nullable=True),
        sa.Column("requested_by", sa.String(length=40), nullable=False),
        sa.Column("completed_by", sa.String(length=40), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_data_requests_site_id_sites")),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"],
                                name=op.f("fk_data_requests_subject_id_subjects")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_requests")),
    )
    with op.batch_alter_table("data_requests", schema=None) as batch_op:
        batch_op.create_index("ix_data_requests_site_status_due",
                              ["site_id", "status", "due_at"], unique=False)


def downgrade():
    with op.batch_alter_table("data_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_data_requests_site_status_due")
    op.drop_table("data_requests")
    op.drop_table("admin_tokens")
    op.drop_table("admin_users")

"""verifiable log: log indexes, Merkle tree nodes, integrated watermarks, checkpoints

Revision ID: tlog_0002
Revises: tlog_0001
"""
from alembic import op
import sqlalchemy as sa

import consent.database

revision = "tlog_0002"
down_revision = "tlog_0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "log_leaves",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("log_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("stream", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_log_leaves_site_id_sites")),
        sa.PrimaryKeyConstraint("site_id", "log_index", name=op.f("pk_log_leaves")),
        sa.UniqueConstraint("site_id", "stream", "seq",
                            name=op.f("uq_log_leaves_site_id_stream_seq")),
    )
    op.create_table(
        "log_nodes",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_log_nodes_site_id_sites")),
        sa.PrimaryKeyConstraint("site_id", "level", "idx", name=op.f("pk_log_nodes")),
    )
    op.create_table(
        "log_streams",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("stream", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_log_streams_site_id_sites")),
        sa.PrimaryKeyConstraint("site_id", "stream", name=op.f("pk_log_streams")),
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("created_at", consent.database.UTCDateTime(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_log_checkpoints_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_checkpoints")),
    )
    op.create_index("ix_log_checkpoints_site_size", "log_checkpoints", ["site_id", "size"])


def downgrade():
    op.drop_index("ix_log_checkpoints_site_size", table_name="log_checkpoints")
    op.drop_table("log_checkpoints")
    op.drop_table("log_streams")
    op.drop_table("log_nodes")
    op.drop_table("log_leaves")

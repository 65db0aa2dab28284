"""policies: requests recorded by staff (received_via, recorded_at) and from people not
known here (subject_id nullable, contact_kind and keyed contact_ref for matching later)

Revision ID: policies_0003
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

import consent.database

revision = "policies_0003"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("data_requests", schema=None) as batch_op:
        batch_op.alter_column("subject_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("contact_kind", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("contact_ref", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("received_via", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("recorded_at", consent.database.UTCDateTime(),
                                      nullable=True))


def downgrade():
    with op.batch_alter_table("data_requests", schema=None) as batch_op:
        batch_op.drop_column("recorded_at")
        batch_op.drop_column("received_via")
        batch_op.drop_column("contact_ref")
        batch_op.drop_column("contact_kind")
        batch_op.alter_column("subject_id", existing_type=sa.Integer(), nullable=False)

"""attribution: device keys of subjects, refused decisions counted per hour

`subjects.key_hash` holds the SHA-256 of the device key that proves a visitor id (NULL
for subjects stored before keys existed: the first keyed write claims them).
`decision_refusals` counts refused decisions per site, hour, reason and origin for the
dashboard (bounded: aggregated, pruned after 30 days).

Revision ID: attribution_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

import consent.database

revision = "attribution_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("subjects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_hash", sa.String(length=64), nullable=True))
    op.create_table(
        "decision_refusals",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("hour", consent.database.UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_decision_refusals_site_id_sites")),
        sa.PrimaryKeyConstraint("site_id", "hour", "reason", "detail",
                                name=op.f("pk_decision_refusals")),
    )


def downgrade():
    op.drop_table("decision_refusals")
    with op.batch_alter_table("subjects", schema=None) as batch_op:
        batch_op.drop_column("key_hash")

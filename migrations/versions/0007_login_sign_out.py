"""preference center: signing out ends the sign-in on the server (login_link_uses.signed_out_at)

A sign-in through a login link lived only in the browser's signed session cookie, so a
copy of that cookie stayed signed in after "Sign out" until it expired. The sign-in now
names its link (the used link's row), and signing out marks that row.

Revision ID: 0007
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

import consent.database

revision = "0007"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("login_link_uses") as batch:
        batch.add_column(sa.Column("signed_out_at", consent.database.UTCDateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("login_link_uses") as batch:
        batch.drop_column("signed_out_at")

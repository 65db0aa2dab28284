"""minors: the browsers linked to a minor's account carry the account's minor flag

Until this revision an account that became a minor by its own age answer left the flag
off its linked browsers, and a lookup of the account's flag screened them instead. The
flag is now carried to linked browsers when it is set (consent.minors.set_minor) and the
lookup is gone, so the browsers linked to accounts flagged before are flagged here: the
same screening as before, kept in the one place that now decides it. Nothing in the
ledger changes; what such a browser had granted alone before stays as recorded (the
site's backend withdraws it with `POST /age`, which carries the flag and the withdrawal).

Revision ID: policies_0004
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "policies_0004"
down_revision = "0002"
branch_labels = None
depends_on = None

CARRY = sa.text(
    "UPDATE subjects SET is_minor = :yes WHERE is_minor = :no AND erased_at IS NULL "
    "AND id IN (SELECT l.subject_id FROM subject_links l JOIN subjects a "
    "ON a.id = l.account_id WHERE a.is_minor = :yes)")


def upgrade():
    op.get_bind().execute(CARRY, {"yes": True, "no": False})


def downgrade():
    pass  # the flags stay: the lookup they replace would give the same answer

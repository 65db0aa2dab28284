"""idempotency keys per person: unique (site_id, subject, idempotency_key)

A client's idempotency key was unique per site, so replaying another visitor's key
answered with that visitor's event (issue 13, finding 3). The new unique index starts
with (site_id, subject), so it also serves look-ups by subject and replaces
ix_consent_events_site_subject: the write path keeps the same number of b-trees.

Revision ID: tlog_0001
Revises: 0001
"""
from alembic import op

from consent.ledger import append_only_ddl

revision = "tlog_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def _reinstall_guard():
    # SQLite's batch mode rebuilds the table, which drops its triggers.
    bind = op.get_bind()
    for statement in append_only_ddl(bind.dialect.name):
        op.execute(statement)


def upgrade():
    with op.batch_alter_table("consent_events") as batch_op:
        batch_op.drop_constraint("uq_consent_events_site_id_idempotency_key", type_="unique")
        batch_op.drop_index("ix_consent_events_site_subject")
        batch_op.create_unique_constraint(
            "uq_consent_events_site_id_subject_idempotency_key",
            ["site_id", "subject", "idempotency_key"])
    _reinstall_guard()


def downgrade():
    with op.batch_alter_table("consent_events") as batch_op:
        batch_op.drop_constraint("uq_consent_events_site_id_subject_idempotency_key",
                                 type_="unique")
        batch_op.create_index("ix_consent_events_site_subject", ["site_id", "subject"])
        batch_op.create_unique_constraint("uq_consent_events_site_id_idempotency_key",
                                          ["site_id", "idempotency_key"])
    _reinstall_guard()

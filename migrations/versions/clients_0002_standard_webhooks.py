"""clients: webhook signing secrets in Standard Webhooks form, legacy headers kept for
existing endpoints

Every stored secret becomes `whsec_` + base64 of the bytes it was used as before (its
UTF-8 text), so the HMAC key is unchanged: receivers verifying the former
`X-Consent-Signature` keep working, and the same key verifies the new
`webhook-signature` once they switch (the admin/API show the whsec_ form only at
creation; the receiver computes it from its old secret:
`"whsec_" + base64(old_secret.encode())`). Existing endpoints get `legacy_headers` on.
Needs the production CONSENT_DATA_KEY, like security_0001.

Revision ID: clients_0002
Revises: security_0001
"""
import base64

from alembic import op
import sqlalchemy as sa

revision = "clients_0002"
down_revision = "security_0001"
branch_labels = None
depends_on = None

PREFIX = "whsec_"


def upgrade():
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.add_column(sa.Column("legacy_headers", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    from consent.secretbox import seal, unseal

    bind = op.get_bind()
    endpoints = sa.table("webhook_endpoints", sa.column("id"), sa.column("secret"),
                         sa.column("legacy_headers", sa.Boolean()))
    for row in bind.execute(sa.select(endpoints.c.id, endpoints.c.secret)).all():
        old = unseal(row.secret, "webhook-secret")
        new = PREFIX + base64.b64encode(old.encode("utf-8")).decode("ascii")
        bind.execute(sa.update(endpoints).where(endpoints.c.id == row.id).values(
            secret=seal(new, "webhook-secret"), legacy_headers=True))


def downgrade():
    from consent.secretbox import seal, unseal

    bind = op.get_bind()
    endpoints = sa.table("webhook_endpoints", sa.column("id"), sa.column("secret"),
                         sa.column("legacy_headers", sa.Boolean()))
    for row in bind.execute(sa.select(endpoints.c.id, endpoints.c.secret,
                                      endpoints.c.legacy_headers)).all():
        if not row.legacy_headers:
            continue  # created as a Standard Webhooks secret: nothing older to restore
        text = unseal(row.secret, "webhook-secret")
        old = base64.b64decode(text[len(PREFIX):]).decode("utf-8")
        bind.execute(sa.update(endpoints).where(endpoints.c.id == row.id).values(
            secret=seal(old, "webhook-secret")))
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("legacy_headers")

"""append-only guards: TRUNCATE (PostgreSQL) and INSERT OR REPLACE of notices (SQLite)

Revision ID: guards_0001
Revises: notices_0002
"""
from alembic import op

revision = "guards_0001"
down_revision = "notices_0002"
branch_labels = None
depends_on = None


def upgrade():
    from consent.ledger.chain import truncate_guard_ddl
    from consent.notices import notice_overwrite_ddl

    dialect = op.get_bind().dialect.name
    for statement in truncate_guard_ddl(dialect) + notice_overwrite_ddl(dialect):
        op.execute(statement)


def downgrade():
    from consent.ledger.chain import drop_truncate_guard_ddl
    from consent.notices import drop_notice_overwrite_ddl

    dialect = op.get_bind().dialect.name
    for statement in drop_truncate_guard_ddl(dialect) + drop_notice_overwrite_ddl(dialect):
        op.execute(statement)

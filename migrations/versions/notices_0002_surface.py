"""notices: where a notice was shown (the widget or the preference page)

Revision ID: notices_0002
Revises: notices_0001
"""
from alembic import op
import sqlalchemy as sa

revision = "notices_0002"
down_revision = "notices_0001"
branch_labels = None
depends_on = None


def upgrade():
    # (a new column with a constant default: no row is rewritten, so the append-only
    # triggers have nothing to refuse; every notice kept so far is the widget's)
    op.add_column("notices", sa.Column("surface", sa.String(length=16), nullable=False,
                                       server_default="widget"))


def downgrade():
    # (SQLite drops a column by copying the table, which the triggers would refuse: they
    # go and come back around it)
    from consent.notices import drop_notice_ddl, notice_ddl

    dialect = op.get_bind().dialect.name
    for statement in drop_notice_ddl(dialect):
        op.execute(statement)
    with op.batch_alter_table("notices") as batch:
        batch.drop_column("surface")
    for statement in notice_ddl(dialect):
        op.execute(statement)

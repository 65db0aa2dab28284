"""write path: one b-tree fewer per new subject (site_id index), user_ref only where set

Every index is one more page written per insert. subjects.site_id was indexed twice
(alone, and first in the unique (site_id, public_id) index, which serves the same
look-ups). user_ref is set for few subjects, and every look-up compares it to a value,
so a partial index holds only those rows.

Revision ID: 0006
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0001"
branch_labels = None
depends_on = None

_SET = sa.text("user_ref IS NOT NULL")


def upgrade():
    op.drop_index("ix_subjects_site_id", table_name="subjects")
    op.drop_index("ix_subjects_user_ref", table_name="subjects")
    op.create_index("ix_subjects_user_ref", "subjects", ["user_ref"], unique=False,
                    sqlite_where=_SET, postgresql_where=_SET)


def downgrade():
    op.drop_index("ix_subjects_user_ref", table_name="subjects")
    op.create_index("ix_subjects_user_ref", "subjects", ["user_ref"], unique=False)
    op.create_index("ix_subjects_site_id", "subjects", ["site_id"], unique=False)

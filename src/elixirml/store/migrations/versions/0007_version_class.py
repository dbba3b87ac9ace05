"""Each version records its own class, and the source file it came from.

Until 0006 the class lived on the program (``em_programs.class_path``) and each save replaced
it, so a version saved from another class loaded as the wrong one. Existing versions get the
class their program recorded (the only one known for them).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the class columns to versions and fill them from their programs."""
    with op.batch_alter_table("em_program_versions") as batch:
        batch.add_column(sa.Column("class_path", sa.String(400), nullable=False, server_default=""))
        batch.add_column(sa.Column("class_file", sa.Text, nullable=True))
    versions = sa.table("em_program_versions", sa.column("program_id", sa.Integer), sa.column("class_path", sa.String))
    programs = sa.table("em_programs", sa.column("id", sa.Integer), sa.column("class_path", sa.String))
    mine = sa.select(programs.c.class_path).where(programs.c.id == versions.c.program_id).scalar_subquery()
    op.get_bind().execute(versions.update().values(class_path=sa.func.coalesce(mine, "")))


def downgrade() -> None:
    """Drop the class columns (programs keep the class of their newest save).

    Dropped in place (SQLite 3.35+ can), not by copying the table, which rows of other tables refer to.
    """
    with op.batch_alter_table("em_program_versions", recreate="never") as batch:
        batch.drop_column("class_file")
        batch.drop_column("class_path")

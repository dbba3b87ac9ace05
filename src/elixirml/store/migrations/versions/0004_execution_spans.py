"""The span tree of a traced run (module, adapter, LM and tool calls with their timings).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the spans column to executions."""
    with op.batch_alter_table("em_executions") as batch:
        batch.add_column(sa.Column("spans", sa.JSON, nullable=True))


def downgrade() -> None:
    """Drop the spans column."""
    with op.batch_alter_table("em_executions") as batch:
        batch.drop_column("spans")

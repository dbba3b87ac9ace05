"""The search state of optimization runs, kept so an interrupted run resumes where it stopped.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the run state table."""
    op.create_table(
        "em_run_states",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("em_optimization_runs.id"), primary_key=True),
        sa.Column("optimizer", sa.String(100), nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop the run state table."""
    op.drop_table("em_run_states")

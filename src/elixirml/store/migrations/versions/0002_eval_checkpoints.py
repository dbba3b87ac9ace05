"""Evaluation checkpoints kept in the store.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the checkpoint table."""
    op.create_table(
        "em_eval_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("checkpoint", sa.String(200), nullable=False, index=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("record", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("checkpoint", "key"),
    )


def downgrade() -> None:
    """Drop the checkpoint table."""
    op.drop_table("em_eval_checkpoints")

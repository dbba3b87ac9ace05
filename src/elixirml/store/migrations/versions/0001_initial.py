"""Initial store schema: programs, versions, variable spaces, runs, trials, evaluations, executions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "em_programs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True, index=True),
        sa.Column("signature_summary", sa.Text, nullable=False),
        sa.Column("class_path", sa.String(400), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "em_program_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("program_id", sa.Integer, sa.ForeignKey("em_programs.id"), nullable=False, index=True),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("configuration", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("em_program_versions.id"), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False, index=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("program_id", "number"),
    )
    op.create_table(
        "em_variable_spaces",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("em_program_versions.id"), nullable=False, unique=True),
        sa.Column("space", sa.JSON, nullable=False),
    )
    op.create_table(
        "em_optimization_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("program_id", sa.Integer, sa.ForeignKey("em_programs.id"), nullable=True),
        sa.Column("optimizer", sa.String(100), nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("best_score", sa.Float, nullable=True),
        sa.Column("best_version_id", sa.Integer, sa.ForeignKey("em_program_versions.id"), nullable=True),
        sa.Column("lm_calls", sa.Integer, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
    )
    op.create_table(
        "em_trials",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("em_optimization_runs.id"), nullable=False, index=True),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("configuration", sa.JSON, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("scores", sa.JSON, nullable=False),
        sa.Column("lm_calls", sa.Integer, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("wall_time", sa.Float, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("full", sa.Integer, nullable=False),
        sa.UniqueConstraint("run_id", "number"),
    )
    op.create_table(
        "em_evaluations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("em_program_versions.id"), nullable=True),
        sa.Column("program_name", sa.String(200), nullable=False),
        sa.Column("dataset_fingerprint", sa.String(64), nullable=False, index=True),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("results", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "em_executions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("em_program_versions.id"), nullable=True),
        sa.Column("program_name", sa.String(200), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("trace", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("latency", sa.Float, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    """Drop every table, dependents first."""
    for table in (
        "em_executions",
        "em_evaluations",
        "em_trials",
        "em_optimization_runs",
        "em_variable_spaces",
        "em_program_versions",
        "em_programs",
    ):
        op.drop_table(table)

"""Content-addressed program states, and which process owns a running optimization run.

States and configurations move from ``em_program_versions`` into ``em_state_blobs`` keyed by
their SHA-256, so identical content is stored once and listing versions never reads it. Runs record
the host and process id that runs them, so a run whose process has ended is not reported
as ``running``.

Revision ID: 0003
Revises: 0002
"""

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _hash(state: object) -> str:
    text = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def upgrade() -> None:
    """Create the blob table, move every stored state into it, and add the run owner columns."""
    op.create_table(
        "em_state_blobs",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("state", sa.JSON, nullable=False),
    )
    with op.batch_alter_table("em_program_versions") as batch:
        batch.add_column(sa.Column("state_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("configuration_hash", sa.String(64), nullable=True))
        batch.alter_column("state", existing_type=sa.JSON, nullable=True)
        batch.alter_column("configuration", existing_type=sa.JSON, nullable=True)
        batch.create_index("ix_em_program_versions_state_hash", ["state_hash"])
        batch.create_foreign_key("fk_em_program_versions_state_hash", "em_state_blobs", ["state_hash"], ["hash"])
        batch.create_foreign_key(
            "fk_em_program_versions_configuration_hash", "em_state_blobs", ["configuration_hash"], ["hash"]
        )
    with op.batch_alter_table("em_optimization_runs") as batch:
        batch.add_column(sa.Column("host", sa.String(255), nullable=False, server_default=""))
        batch.add_column(sa.Column("pid", sa.Integer, nullable=True))

    connection = op.get_bind()
    versions, blobs = _tables()
    known: set[str] = set()

    def keep(value: object) -> str:
        digest = _hash(value)
        if digest not in known:
            connection.execute(blobs.insert().values(hash=digest, state=value))
            known.add(digest)
        return digest

    for row in connection.execute(sa.select(versions.c.id, versions.c.state, versions.c.configuration)).all():
        connection.execute(
            versions.update()
            .where(versions.c.id == row.id)
            .values(
                state_hash=keep(row.state),
                configuration_hash=keep(row.configuration or {}),
                state=None,
                configuration=None,
            )
        )


def _tables() -> tuple[sa.TableClause, sa.TableClause]:
    """Lightweight views of the version and blob tables, for moving rows between them."""
    versions = sa.table(
        "em_program_versions",
        sa.column("id", sa.Integer),
        sa.column("state", sa.JSON),
        sa.column("state_hash", sa.String),
        sa.column("configuration", sa.JSON),
        sa.column("configuration_hash", sa.String),
    )
    blobs = sa.table("em_state_blobs", sa.column("hash", sa.String), sa.column("state", sa.JSON))
    return versions, blobs


def downgrade() -> None:
    """Copy states and configurations back into their versions; drop the blob table and run owner columns."""
    connection = op.get_bind()
    versions, blobs = _tables()
    contents = {row.hash: row.state for row in connection.execute(sa.select(blobs.c.hash, blobs.c.state))}
    rows = connection.execute(sa.select(versions.c.id, versions.c.state_hash, versions.c.configuration_hash)).all()
    for row in rows:
        connection.execute(
            versions.update()
            .where(versions.c.id == row.id)
            .values(state=contents.get(row.state_hash), configuration=contents.get(row.configuration_hash, {}))
        )
    with op.batch_alter_table("em_optimization_runs") as batch:
        batch.drop_column("pid")
        batch.drop_column("host")
    with op.batch_alter_table("em_program_versions") as batch:
        batch.drop_constraint("fk_em_program_versions_configuration_hash", type_="foreignkey")
        batch.drop_constraint("fk_em_program_versions_state_hash", type_="foreignkey")
        batch.drop_index("ix_em_program_versions_state_hash")
        batch.drop_column("configuration_hash")
        batch.drop_column("state_hash")
        batch.alter_column("state", existing_type=sa.JSON, nullable=False)
        batch.alter_column("configuration", existing_type=sa.JSON, nullable=False)
    op.drop_table("em_state_blobs")

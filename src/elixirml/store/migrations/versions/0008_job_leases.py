"""Jobs are claimed with a lease: the manager that owns a job and until when.

A manager takes a job by a compare-and-set on ``owner`` and ``lease_expires`` and renews the
lease while the job runs; another manager (on any host) takes over only a job whose lease has
expired or was released. Existing jobs get no owner (NULL): they are taken over as before, when
``interrupted`` or left by a process of this host that has ended.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the owner and lease columns to jobs."""
    with op.batch_alter_table("em_jobs") as batch:
        batch.add_column(sa.Column("owner", sa.String(100), nullable=True))
        batch.add_column(sa.Column("lease_expires", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop the owner and lease columns (dropped in place, as 0007 does)."""
    with op.batch_alter_table("em_jobs", recreate="never") as batch:
        batch.drop_column("lease_expires")
        batch.drop_column("owner")

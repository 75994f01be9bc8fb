"""Model purges: each `iau purge --models` run, planned before anything is removed (so a killed one is finished by
the next), and on each forgotten request the purge that removed the last weights still holding it (its receipt).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

The allowed values are written out here, not imported from ledger.models: a migration is history.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "model_purges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("cleared_data_versions", sa.JSON(), nullable=False),
        sa.CheckConstraint("status IN ('planned', 'done')", name="ck_model_purges_status"),
        sa.PrimaryKeyConstraint("id", name="pk_model_purges"),
    )
    with op.batch_alter_table("deletion_requests") as batch:  # SQLite adds a foreign key only by copying the table
        batch.add_column(sa.Column("model_purge_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_deletion_requests_model_purge_id_model_purges", "model_purges",
                                 ["model_purge_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("deletion_requests") as batch:
        batch.drop_constraint("fk_deletion_requests_model_purge_id_model_purges", type_="foreignkey")
        batch.drop_column("model_purge_id")
    op.drop_table("model_purges")

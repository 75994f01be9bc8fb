"""The nightly ladder: a batch (and the champion it makes) may use any method of the unlearning registry, not only
iau or retrain, so the CHECK constraints that listed the two methods go. The names are checked where they come
from (params.yaml's nightly.ladder against the registry) and by the ledger's code (a plain lowercase name); a list
here would need a migration for every new method. Existing rows keep their values.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:  # SQLite drops a constraint only by copying the table
        batch.drop_constraint("ck_batches_method", type_="check")
    with op.batch_alter_table("champions") as batch:
        batch.drop_constraint("ck_champions_method", type_="check")


def downgrade() -> None:  # refused by the database if a batch or champion used another method since
    with op.batch_alter_table("batches") as batch:
        batch.create_check_constraint("ck_batches_method", "method IN ('iau', 'retrain')")
    with op.batch_alter_table("champions") as batch:
        batch.create_check_constraint("ck_champions_method", "method IN ('train', 'iau', 'retrain')")

"""`iau requests cancel`: a pending request may be withdrawn, so a request's status may also be 'cancelled'. The
row stays (with its events: who asked, who withdrew, why); asking again for the record revives it as pending.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = "status IN ('pending', 'processing', 'done', 'escalated')"
AFTER = "status IN ('pending', 'processing', 'done', 'escalated', 'cancelled')"


def upgrade() -> None:
    with op.batch_alter_table("deletion_requests") as batch:  # SQLite changes a constraint only by copying the table
        batch.drop_constraint("ck_deletion_requests_status", type_="check")
        batch.create_check_constraint("status", AFTER)  # named by the metadata's convention: ck_<table>_status


def downgrade() -> None:  # refused by the database while a request is cancelled
    with op.batch_alter_table("deletion_requests") as batch:
        batch.drop_constraint("ck_deletion_requests_status", type_="check")
        batch.create_check_constraint("status", BEFORE)

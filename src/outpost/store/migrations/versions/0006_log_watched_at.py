"""when a plan's or apply's log was last read while being written

The agent batches a log every 100 ms while someone reads it and every 500 ms otherwise; the append's
answer tells it which, from this column, which every replica sees.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

import outpost.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TABLES = ("plans", "applies")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("log_watched_at", outpost.store.types.UTCDateTime(timezone=True), nullable=True)
            )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("log_watched_at")

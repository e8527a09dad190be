"""references that go with what they point at, so an organization can be deleted on PostgreSQL

Deleting an organization cascades to its agent pools, workspaces, configuration versions, runs and jobs.
PostgreSQL checks each foreign key as its row is deleted, in an order of its own, so a job still pointing
at its pool, or a run at its configuration version, made the delete fail. Those references now cascade
(a job of a deleted pool, a run of a deleted configuration, go with it), and a workspace's pool is set to
NULL. Batch mode: SQLite can only change a constraint by rebuilding the table.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (table, column, referred table, ondelete): the constraint names follow the naming convention in tables.py.
CHANGES = [
    ("jobs", "pool_id", "agent_pools", "CASCADE"),
    ("runs", "configuration_version_id", "configuration_versions", "CASCADE"),
    ("workspaces", "agent_pool_id", "agent_pools", "SET NULL"),
]


def _swap(ondelete: str | None) -> None:
    for table, column, referred, action in CHANGES:
        name = f"fk_{table}_{column}_{referred}"
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(name, type_="foreignkey")
            batch.create_foreign_key(name, referred, [column], ["id"], ondelete=action if ondelete else None)


def upgrade() -> None:
    _swap("new")


def downgrade() -> None:
    _swap(None)

"""indexes that keep hot statements independent of history

A run's creation read the workspace's highest queue position by scanning every run the workspace ever
had; each agent call read every job the agent ever held to find its standing force-cancels; the
monitor, every two seconds and inside a write transaction, read every job ever run to find the assigned
and running ones, and every agent ever registered to find the live ones. All are index ranges now:
(workspace_id, seq) on runs, (agent_id, finished_at) and (status, started_at) on jobs, (status,
last_ping_at) on agents.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_workspace_seq", ["workspace_id", "seq"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_agent_finished", ["agent_id", "finished_at"], unique=False)
        batch_op.create_index("ix_jobs_status_started", ["status", "started_at"], unique=False)
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.create_index("ix_agents_status_ping", ["status", "last_ping_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index("ix_agents_status_ping")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_started")
        batch_op.drop_index("ix_jobs_agent_finished")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_workspace_seq")

"""web sessions and sign-in failures (the web UI)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import outpost.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("user_token_id", sa.String(length=40), nullable=True),
        sa.Column("password_stamp", sa.String(length=64), nullable=True),
        sa.Column("created_at", outpost.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", outpost.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", outpost.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_web_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_token_id"],
            ["user_tokens.id"],
            name=op.f("fk_web_sessions_user_token_id_user_tokens"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_sessions_token_hash")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("at", outpost.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_failures")),
    )
    with op.batch_alter_table("sign_in_failures", schema=None) as batch_op:
        batch_op.create_index("ix_sign_in_failures_email_at", ["email", "at"], unique=False)
        batch_op.create_index("ix_sign_in_failures_ip_at", ["ip", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sign_in_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_sign_in_failures_ip_at")
        batch_op.drop_index("ix_sign_in_failures_email_at")
    op.drop_table("sign_in_failures")
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_user_id"))
    op.drop_table("web_sessions")

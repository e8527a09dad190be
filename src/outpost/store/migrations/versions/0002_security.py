"""security: organization memberships, team access, teams' organization access, encrypted variables

Existing members (users in any team) become organization members. Existing sensitive variable values are
encrypted with the server's key, which `outpost.store.migrate.upgrade` hands over; without a key the
migration stops with an explanation instead of leaving secrets in plain text.

Revision ID: 0002
Revises: 0001
"""

import secrets
import string
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op
from cryptography.fernet import Fernet, MultiFernet

import outpost.store.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ALPHABET = string.ascii_letters + string.digits


def _id(prefix: str) -> str:
    return f"{prefix}-" + "".join(secrets.choice(_ALPHABET) for _ in range(16))


def upgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.add_column(sa.Column("read_workspaces", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("manage_workspaces", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("manage_membership", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("variables") as batch:
        batch.add_column(sa.Column("value_ciphertext", sa.Text(), nullable=True))
    memberships = op.create_table(
        "organization_memberships",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", outpost.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_organization_memberships_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_organization_memberships_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization_memberships")),
        sa.UniqueConstraint("organization_id", "user_id", name=op.f("uq_organization_memberships_organization_id")),
    )
    op.create_index(op.f("ix_organization_memberships_user_id"), "organization_memberships", ["user_id"], unique=False)
    op.create_table(
        "team_workspaces",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("access", sa.String(length=8), nullable=False),
        sa.Column("created_at", outpost.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_team_workspaces_team_id_teams"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_team_workspaces_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_workspaces")),
        sa.UniqueConstraint("team_id", "workspace_id", name=op.f("uq_team_workspaces_team_id")),
    )
    op.create_index(op.f("ix_team_workspaces_workspace_id"), "team_workspaces", ["workspace_id"], unique=False)

    bind = op.get_bind()
    existing = bind.execute(
        sa.text(
            "SELECT DISTINCT teams.organization_id, team_members.user_id "
            "FROM team_members JOIN teams ON teams.id = team_members.team_id"
        )
    ).all()
    if existing:
        now = datetime.now(UTC)
        op.bulk_insert(
            memberships,
            [{"id": _id("ou"), "organization_id": org, "user_id": user, "created_at": now} for org, user in existing],
        )
    _encrypt_sensitive_values(bind)


def _encrypt_sensitive_values(bind: sa.Connection) -> None:
    rows = bind.execute(
        sa.text("SELECT id, value FROM variables WHERE sensitive = :yes AND value_ciphertext IS NULL"),
        {"yes": True},
    ).all()
    if not rows:
        return
    keys = context.config.attributes.get("encryption_keys")
    if not keys:
        raise RuntimeError(
            f"{len(rows)} sensitive variables must be encrypted by this migration, which needs the server's "
            "encryption key: run `outpost server` (it migrates with its key), or `outpost admin migrate` with "
            "--encryption-key or --encryption-key-file."
        )
    box = MultiFernet([Fernet(k) for k in keys])
    for var_id, value in rows:
        bind.execute(
            sa.text("UPDATE variables SET value_ciphertext = :c, value = '' WHERE id = :id"),
            {"c": box.encrypt((value or "").encode()).decode(), "id": var_id},
        )


def _decrypt_sensitive_values(bind: sa.Connection) -> None:
    rows = bind.execute(sa.text("SELECT id, value_ciphertext FROM variables WHERE value_ciphertext IS NOT NULL")).all()
    if not rows:
        return
    keys = context.config.attributes.get("encryption_keys")
    if not keys:
        raise RuntimeError("Downgrading decrypts sensitive variables and needs the server's encryption key.")
    box = MultiFernet([Fernet(k) for k in keys])
    for var_id, ciphertext in rows:
        bind.execute(
            sa.text("UPDATE variables SET value = :v WHERE id = :id"),
            {"v": box.decrypt(ciphertext.encode()).decode(), "id": var_id},
        )


def downgrade() -> None:
    _decrypt_sensitive_values(op.get_bind())
    op.drop_index(op.f("ix_team_workspaces_workspace_id"), table_name="team_workspaces")
    op.drop_table("team_workspaces")
    op.drop_index(op.f("ix_organization_memberships_user_id"), table_name="organization_memberships")
    op.drop_table("organization_memberships")
    with op.batch_alter_table("variables") as batch:
        batch.drop_column("value_ciphertext")
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("manage_membership")
        batch.drop_column("manage_workspaces")
        batch.drop_column("read_workspaces")

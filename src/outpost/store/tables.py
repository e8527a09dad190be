"""The tables. Names and columns are the same on SQLite and PostgreSQL; nothing here is dialect-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from outpost.store.types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


ID = String(40)


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(ID, primary_key=True)  # the name, as in Terraform Cloud
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime]


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]


class Team(Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # Owners manage everything in the organization, agent pools and tokens included.
    is_owners: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    # Organization access (Terraform Cloud's names): see outpost.domain.permissions.
    read_workspaces: Mapped[bool] = mapped_column(Boolean, default=False)
    manage_workspaces: Mapped[bool] = mapped_column(Boolean, default=False)
    manage_membership: Mapped[bool] = mapped_column(Boolean, default=False)


class TeamMember(Base):
    __tablename__ = "team_members"
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class UserToken(Base):
    __tablename__ = "user_tokens"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AgentPool(Base):
    __tablename__ = "agent_pools"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    # NULL for the built-in pool that the server's own agent serves for `remote` workspaces.
    organization_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    organization_scoped: Mapped[bool] = mapped_column(Boolean, default=True)
    is_builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class PoolAllowedWorkspace(Base):
    __tablename__ = "pool_allowed_workspaces"
    pool_id: Mapped[str] = mapped_column(ForeignKey("agent_pools.id", ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)


class AgentToken(Base):
    __tablename__ = "agent_tokens"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    pool_id: Mapped[str] = mapped_column(ForeignKey("agent_pools.id", ondelete="CASCADE"), index=True)
    description: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    # Revoked tokens are kept so that agents registered through them can be told why they must exit.
    revoked_at: Mapped[datetime | None]


class Agent(Base):
    __tablename__ = "agents"
    # The monitor's liveness passes (live agents past the heartbeat cutoff, unknown ones past theirs) every
    # few seconds: a range of the live agents, not a read of every agent that ever registered.
    __table_args__ = (Index("ix_agents_status_ping", "status", "last_ping_at"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    pool_id: Mapped[str] = mapped_column(ForeignKey("agent_pools.id", ondelete="CASCADE"), index=True)
    token_id: Mapped[str] = mapped_column(ForeignKey("agent_tokens.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    hostname: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(64))
    capacity: Mapped[int] = mapped_column(Integer, default=1)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    last_ping_at: Mapped[datetime]
    status_changed_at: Mapped[datetime]
    exit_reason: Mapped[str | None] = mapped_column(Text)


class Workspace(Base):
    __tablename__ = "workspaces"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(90))
    description: Mapped[str | None] = mapped_column(Text)
    execution_mode: Mapped[str] = mapped_column(String(16))
    # SET NULL and the CASCADEs below: deleting an organization deletes its pools, workspaces, runs and
    # jobs in one statement, and PostgreSQL checks each reference as its row goes, in no given order.
    agent_pool_id: Mapped[str | None] = mapped_column(ForeignKey("agent_pools.id", ondelete="SET NULL"), index=True)
    terraform_version: Mapped[str] = mapped_column(String(32))
    auto_apply: Mapped[bool] = mapped_column(Boolean, default=False)
    working_directory: Mapped[str | None] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(32), default="tfe-api")
    # A lock held by a user (through the API); a run holds the workspace through current_run_id.
    locked_by_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    lock_reason: Mapped[str | None] = mapped_column(Text)
    current_run_id: Mapped[str | None] = mapped_column(String(40))
    latest_run_id: Mapped[str | None] = mapped_column(String(40))
    current_state_version_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Variable(Base):
    __tablename__ = "variables"
    __table_args__ = (UniqueConstraint("workspace_id", "key", "category"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(16))  # terraform | env
    hcl: Mapped[bool] = mapped_column(Boolean, default=False)
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    # A sensitive variable's value, encrypted with the server's key (`value` is then empty).
    value_ciphertext: Mapped[str | None] = mapped_column(Text)


class Blob(Base):
    """Configuration archives, plan files and state: bytes every replica can read."""

    __tablename__ = "blobs"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class ConfigurationVersion(Base):
    __tablename__ = "configuration_versions"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    speculative: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_queue_runs: Mapped[bool] = mapped_column(Boolean, default=True)
    blob_id: Mapped[str | None] = mapped_column(ForeignKey("blobs.id"))
    error_message: Mapped[str | None] = mapped_column(Text)
    status_timestamps: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_workspace_status", "workspace_id", "status"),
        # A new run's queue position (the workspace's highest seq) and the newest-first run list: an
        # index walk, not a scan of every run the workspace ever had.
        Index("ix_runs_workspace_seq", "workspace_id", "seq"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    configuration_version_id: Mapped[str] = mapped_column(ForeignKey("configuration_versions.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(32))
    is_destroy: Mapped[bool] = mapped_column(Boolean, default=False)
    refresh: Mapped[bool] = mapped_column(Boolean, default=True)
    refresh_only: Mapped[bool] = mapped_column(Boolean, default=False)
    plan_only: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_apply: Mapped[bool] = mapped_column(Boolean, default=False)
    target_addrs: Mapped[list[str]] = mapped_column(JSON, default=list)
    replace_addrs: Mapped[list[str]] = mapped_column(JSON, default=list)
    has_changes: Mapped[bool] = mapped_column(Boolean, default=False)
    # The workspace's execution mode when the run was planned: an apply after a change is refused.
    execution_mode: Mapped[str | None] = mapped_column(String(16))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_by_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status_timestamps: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]
    # Queue order within a workspace (monotonic per workspace; ties broken by id).
    seq: Mapped[int] = mapped_column(BigInteger)


class _Phase:
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    resource_additions: Mapped[int] = mapped_column(Integer, default=0)
    resource_changes: Mapped[int] = mapped_column(Integer, default=0)
    resource_destructions: Mapped[int] = mapped_column(Integer, default=0)
    log_size: Mapped[int] = mapped_column(BigInteger, default=0)
    # Set once every byte of the log is stored: the log-read protocol then sends ETX.
    log_complete: Mapped[bool] = mapped_column(Boolean, default=False)
    # When someone last read the log while it was still being written: the agent ships it every 100 ms
    # while someone does, every 500 ms otherwise (store/logs.py, server/log_watch.py).
    log_watched_at: Mapped[datetime | None]
    status_timestamps: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    agent_id: Mapped[str | None] = mapped_column(String(40))


class Plan(_Phase, Base):
    __tablename__ = "plans"
    has_changes: Mapped[bool] = mapped_column(Boolean, default=False)
    plan_file_blob_id: Mapped[str | None] = mapped_column(ForeignKey("blobs.id"))
    plan_json_blob_id: Mapped[str | None] = mapped_column(ForeignKey("blobs.id"))


class Apply(_Phase, Base):
    __tablename__ = "applies"
    state_version_id: Mapped[str | None] = mapped_column(String(40))


class LogChunk(Base):
    __tablename__ = "log_chunks"
    log_id: Mapped[str] = mapped_column(ID, primary_key=True)  # a plan or apply id
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_pool_status", "pool_id", "status", "created_at"),
        Index("ix_jobs_agent_status", "agent_id", "status"),
        # An agent's recently ended jobs (force-cancels repeated after the end) without reading its history.
        Index("ix_jobs_agent_finished", "agent_id", "finished_at"),
        # The monitor's passes over assigned and running jobs (unstarted ones of dead agents, overrun
        # ones), every few seconds inside a write transaction: the active jobs, not every job ever run.
        Index("ix_jobs_status_started", "status", "started_at"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    phase: Mapped[str] = mapped_column(String(8))
    pool_id: Mapped[str] = mapped_column(ForeignKey("agent_pools.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    # The job credential (hash). Valid only while the job is assigned or running.
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Incremented at every claim: the fencing token that tells an old claim from the current one.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    assigned_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]
    force_cancel_requested_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)


class StateVersion(Base):
    __tablename__ = "state_versions"
    __table_args__ = (Index("ix_state_versions_ws_serial", "workspace_id", "serial"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    run_id: Mapped[str | None] = mapped_column(String(40))
    serial: Mapped[int] = mapped_column(BigInteger)
    lineage: Mapped[str | None] = mapped_column(String(64))
    md5: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger)
    terraform_version: Mapped[str | None] = mapped_column(String(32))
    blob_id: Mapped[str] = mapped_column(ForeignKey("blobs.id"))
    created_at: Mapped[datetime]


class StateVersionOutput(Base):
    __tablename__ = "state_version_outputs"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    state_version_id: Mapped[str] = mapped_column(ForeignKey("state_versions.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    type: Mapped[str] = mapped_column(String(32))
    detailed_type: Mapped[Any] = mapped_column(JSON, nullable=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)


class WebSession(Base):
    """A signed-in browser. The cookie holds a random secret; only its hash is stored, so every replica
    can check it and a leaked database does not sign anyone in."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(16))  # password | token
    # Signed in with an API token: the session ends when that token is revoked.
    user_token_id: Mapped[str | None] = mapped_column(ForeignKey("user_tokens.id", ondelete="CASCADE"))
    # Signed in with a password: a digest of the password hash then; a new password ends the session.
    password_stamp: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class SignInFailure(Base):
    """Recent failed sign-ins, by email and by client address, to slow down password guessing."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (
        Index("ix_sign_in_failures_email_at", "email", "at"),
        Index("ix_sign_in_failures_ip_at", "ip", "at"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]


class OrganizationMembership(Base):
    """A user's membership of an organization; teams group members and carry access."""

    __tablename__ = "organization_memberships"
    __table_args__ = (UniqueConstraint("organization_id", "user_id"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]


class TeamWorkspace(Base):
    """A team's access level to one workspace (Terraform Cloud's team-workspaces)."""

    __tablename__ = "team_workspaces"
    __table_args__ = (UniqueConstraint("team_id", "workspace_id"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    access: Mapped[str] = mapped_column(String(8))  # read | plan | write | admin
    created_at: Mapped[datetime]

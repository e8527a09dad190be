"""Configuration versions and their uploads."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.errors import Conflict, NotFound
from outpost.ids import new_id
from outpost.store import archives, blobs
from outpost.store.tables import ConfigurationVersion, Workspace
from outpost.timeutil import iso, utcnow

SOURCES = {"tfe-api", "terraform", "terraform+cloud", "github", "gitlab", "bitbucket", "ado"}


async def create(
    session: AsyncSession, workspace: Workspace, *, speculative: bool, auto_queue_runs: bool, source: str
) -> ConfigurationVersion:
    cv = ConfigurationVersion(
        id=new_id("cv"),
        workspace_id=workspace.id,
        status="pending",
        source=source if source in SOURCES else "tfe-api",
        speculative=speculative,
        auto_queue_runs=auto_queue_runs,
        status_timestamps={},
        created_at=utcnow(),
    )
    session.add(cv)
    await session.flush()
    return cv


async def get(session: AsyncSession, cv_id: str) -> ConfigurationVersion:
    cv = await session.get(ConfigurationVersion, cv_id)
    if cv is None:
        raise NotFound(f"Configuration version {cv_id!r} was not found.")
    return cv


async def list_for(session: AsyncSession, workspace_id: str) -> list[ConfigurationVersion]:
    return list(
        (
            await session.execute(
                select(ConfigurationVersion)
                .where(ConfigurationVersion.workspace_id == workspace_id)
                .order_by(ConfigurationVersion.created_at.desc())
            )
        ).scalars()
    )


async def latest_uploaded(session: AsyncSession, workspace_id: str) -> ConfigurationVersion | None:
    """The newest configuration version with its archive in place: what a run queued without one uses."""
    return (
        await session.execute(
            select(ConfigurationVersion)
            .where(ConfigurationVersion.workspace_id == workspace_id, ConfigurationVersion.status == "uploaded")
            .order_by(ConfigurationVersion.created_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def upload(session: AsyncSession, cv: ConfigurationVersion, data: bytes) -> None:
    """Validate first: a bad archive changes nothing."""
    if cv.status != "pending":
        raise Conflict(
            f"Configuration version {cv.id} is {cv.status}; uploads are accepted once, while pending. "
            "Create a new configuration version.",
            title="already uploaded",
        )
    archives.validate(data)
    cv.blob_id = await blobs.put(session, data)
    cv.status = "uploaded"
    cv.status_timestamps = {**cv.status_timestamps, "uploaded-at": iso(utcnow())}
    await session.flush()

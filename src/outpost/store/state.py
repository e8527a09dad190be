"""State versions and their outputs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.errors import NotFound, Unprocessable
from outpost.ids import new_id
from outpost.store import blobs
from outpost.store.tables import StateVersion, StateVersionOutput, Workspace
from outpost.timeutil import utcnow


def parse_state(raw: bytes) -> dict[str, Any]:
    try:
        state = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Unprocessable(f"The state is not JSON ({exc}).", title="invalid state") from None
    if not isinstance(state, dict) or not isinstance(state.get("serial"), int) or "version" not in state:
        raise Unprocessable(
            "The state must be a Terraform state document with a version and a serial.", title="invalid state"
        )
    return state


def _simple_type(detailed: Any) -> str:
    if isinstance(detailed, str):
        return detailed
    if isinstance(detailed, list) and detailed:
        return "array" if detailed[0] in ("list", "tuple", "set") else "object"
    return "string"


async def create(session: AsyncSession, workspace: Workspace, raw: bytes, *, run_id: str | None) -> StateVersion:
    state = parse_state(raw)
    sv = StateVersion(
        id=new_id("sv"),
        workspace_id=workspace.id,
        run_id=run_id,
        serial=state["serial"],
        lineage=state.get("lineage"),
        md5=hashlib.md5(raw, usedforsecurity=False).hexdigest(),
        size=len(raw),
        terraform_version=state.get("terraform_version"),
        blob_id=await blobs.put(session, raw),
        created_at=utcnow(),
    )
    session.add(sv)
    outputs = state.get("outputs") or {}
    if isinstance(outputs, dict):
        for name, output in sorted(outputs.items()):
            if not isinstance(output, dict):
                continue
            detailed = output.get("type", "string")
            session.add(
                StateVersionOutput(
                    id=new_id("wsout"),
                    state_version_id=sv.id,
                    name=name,
                    sensitive=bool(output.get("sensitive", False)),
                    type=_simple_type(detailed),
                    detailed_type=detailed,
                    value=output.get("value"),
                )
            )
    workspace.current_state_version_id = sv.id
    await session.flush()
    return sv


async def get(session: AsyncSession, sv_id: str) -> StateVersion:
    sv = await session.get(StateVersion, sv_id)
    if sv is None:
        raise NotFound(f"State version {sv_id!r} was not found.")
    return sv


async def current(session: AsyncSession, workspace: Workspace) -> StateVersion | None:
    if workspace.current_state_version_id is None:
        return None
    return await session.get(StateVersion, workspace.current_state_version_id)


async def current_raw(session: AsyncSession, workspace: Workspace) -> bytes | None:
    sv = await current(session, workspace)
    return None if sv is None else await blobs.get(session, sv.blob_id)


async def outputs(session: AsyncSession, sv_id: str) -> list[StateVersionOutput]:
    return list(
        (
            await session.execute(
                select(StateVersionOutput)
                .where(StateVersionOutput.state_version_id == sv_id)
                .order_by(StateVersionOutput.name)
            )
        ).scalars()
    )


async def list_for(session: AsyncSession, workspace_id: str) -> list[StateVersion]:
    return list(
        (
            await session.execute(
                select(StateVersion)
                .where(StateVersion.workspace_id == workspace_id)
                .order_by(StateVersion.created_at.desc(), StateVersion.serial.desc())
            )
        ).scalars()
    )

"""Blobs: bytes kept in the database, so every replica reads the same ones."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.errors import NotFound
from outpost.ids import new_id
from outpost.store.tables import Blob
from outpost.timeutil import utcnow


async def put(session: AsyncSession, data: bytes) -> str:
    blob = Blob(
        id=new_id("blob", 20),
        data=data,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=utcnow(),
    )
    session.add(blob)
    await session.flush()
    return blob.id


async def get(session: AsyncSession, blob_id: str) -> bytes:
    data = (await session.execute(select(Blob.data).where(Blob.id == blob_id))).scalar_one_or_none()
    if data is None:
        raise NotFound("The stored content is missing.")
    return data

"""Administrative operations run outside the server process."""

from __future__ import annotations

import asyncio

from outpost.errors import Conflict, NotFound
from outpost.store import migrate, users
from outpost.store.db import Database
from outpost.store.tables import Organization


async def bootstrap(url: str, org: str, email: str) -> str:
    """The organization, its owners team, the user in it, and a new API token for that user."""
    await asyncio.to_thread(migrate.upgrade, url)
    db = Database(url)
    try:
        async with db.write() as session:
            if await session.get(Organization, org) is None:
                try:
                    await users.create_organization(session, org, email)
                except Conflict:
                    pass
            user = await users.ensure_user(session, email)
            team = await users.owners_team(session, org)
            await users.add_member(session, team.id, user.id)
            _, secret = await users.create_user_token(session, user.id, "bootstrap")
        return secret
    finally:
        await db.dispose()


async def set_password(url: str, email: str, password: str) -> None:
    """Set the web sign-in password of an existing user (which also ends the user's password sessions)."""
    from outpost.passwords import hash_password

    hashed = await asyncio.to_thread(hash_password, password)
    await asyncio.to_thread(migrate.upgrade, url)
    db = Database(url)
    try:
        async with db.write() as session:
            await users.set_password(session, email, hashed)
    finally:
        await db.dispose()


async def issue_token(url: str, email: str, description: str) -> str:
    """A new API token for an existing user."""
    db = Database(url)
    try:
        async with db.write() as session:
            user = await users.user_by_email(session, email)
            if user is None:
                raise NotFound(f"No user has the email {email!r}: invite them to an organization first.")
            _, secret = await users.create_user_token(session, user.id, description[:200])
        return secret
    finally:
        await db.dispose()

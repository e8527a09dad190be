"""Organizations, users, teams and user API tokens."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.workspaces import check_organization_name
from outpost.errors import Conflict, NotFound, Unauthorized
from outpost.ids import TokenKind, hash_secret, new_id, new_secret
from outpost.store import access
from outpost.store.tables import Organization, OrganizationMembership, Team, TeamMember, User, UserToken
from outpost.timeutil import utcnow

OWNERS = "owners"


@dataclass(frozen=True)
class Principal:
    """Who is asking, through a user API token."""

    user_id: str
    email: str
    token_id: str


async def create_organization(session: AsyncSession, name: str, email: str) -> Organization:
    check_organization_name(name)
    if await session.get(Organization, name) is not None:
        raise Conflict(f"An organization named {name!r} already exists.", title="name taken")
    org = Organization(id=name, email=email, created_at=utcnow())
    session.add(org)
    session.add(Team(id=new_id("team"), organization_id=name, name=OWNERS, is_owners=True, created_at=utcnow()))
    await session.flush()
    return org


async def owners_team(session: AsyncSession, org_id: str) -> Team:
    team = (
        await session.execute(select(Team).where(Team.organization_id == org_id, Team.is_owners.is_(True)))
    ).scalar_one_or_none()
    if team is None:
        team = Team(id=new_id("team"), organization_id=org_id, name=OWNERS, is_owners=True, created_at=utcnow())
        session.add(team)
        await session.flush()
    return team


async def ensure_user(session: AsyncSession, email: str) -> User:
    user = (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()
    if user is None:
        base = email.split("@", 1)[0] or "user"
        username = base
        n = 1
        while (await session.execute(select(User.id).where(User.username == username))).first():
            n += 1
            username = f"{base}{n}"
        user = User(id=new_id("user"), email=email, username=username, created_at=utcnow())
        session.add(user)
        await session.flush()
    return user


async def ensure_membership(session: AsyncSession, org_id: str, user_id: str) -> OrganizationMembership:
    found = (
        await session.execute(
            select(OrganizationMembership).where(
                OrganizationMembership.organization_id == org_id, OrganizationMembership.user_id == user_id
            )
        )
    ).scalar_one_or_none()
    if found is None:
        found = OrganizationMembership(id=new_id("ou"), organization_id=org_id, user_id=user_id, created_at=utcnow())
        session.add(found)
        await session.flush()
    return found


async def add_member(session: AsyncSession, team_id: str, user_id: str) -> None:
    """Put the user in the team (and so in its organization)."""
    team = await session.get(Team, team_id)
    if team is None:
        raise NotFound(f"Team {team_id!r} was not found.")
    await ensure_membership(session, team.organization_id, user_id)
    if await session.get(TeamMember, (team_id, user_id)) is None:
        session.add(TeamMember(team_id=team_id, user_id=user_id))
        await session.flush()


async def create_user_token(session: AsyncSession, user_id: str, description: str = "") -> tuple[UserToken, str]:
    secret = new_secret(TokenKind.USER)
    token = UserToken(
        id=new_id("at"),
        user_id=user_id,
        description=description,
        token_hash=hash_secret(secret),
        created_at=utcnow(),
    )
    session.add(token)
    await session.flush()
    return token, secret


# Every API request starts here: the statement is built once.
_TOKEN = (
    select(UserToken.id, UserToken.user_id, User.email)
    .join(User, User.id == UserToken.user_id)
    .where(UserToken.token_hash == bindparam("token_hash"), UserToken.revoked_at.is_(None))
)


async def authenticate(session: AsyncSession, secret: str) -> Principal:
    row = (await session.execute(_TOKEN, {"token_hash": hash_secret(secret)})).first()
    if row is None:
        raise Unauthorized("The API token is missing, malformed or revoked.")
    return Principal(user_id=row.user_id, email=row.email, token_id=row.id)


async def list_user_tokens(session: AsyncSession, user_id: str) -> list[UserToken]:
    return list(
        (
            await session.execute(
                select(UserToken)
                .where(UserToken.user_id == user_id, UserToken.revoked_at.is_(None))
                .order_by(UserToken.created_at, UserToken.id)
            )
        ).scalars()
    )


async def get_user_token(session: AsyncSession, token_id: str) -> UserToken | None:
    token = await session.get(UserToken, token_id)
    return None if token is None or token.revoked_at is not None else token


async def revoke_user_token(session: AsyncSession, token: UserToken) -> None:
    """Revoked at once: the next request with it is refused (tokens are looked up on every request)."""
    token.revoked_at = utcnow()
    await session.flush()


async def touch_user_token(session: AsyncSession, token_id: str) -> None:
    await session.execute(update(UserToken).where(UserToken.id == token_id).values(last_used_at=utcnow()))


@dataclass(frozen=True)
class Membership:
    organization_id: str
    is_owner: bool


async def membership(session: AsyncSession, user_id: str, org_id: str) -> Membership:
    """The user's standing in the organization; NotFound if not a member (other orgs are invisible)."""
    found = await access.standing(session, user_id, org_id)
    if found is None:
        raise NotFound(f"Organization {org_id!r} was not found.")
    return Membership(organization_id=org_id, is_owner=found.is_owner)


async def organizations_of(session: AsyncSession, user_id: str) -> list[Organization]:
    return list(
        (
            await session.execute(
                select(Organization)
                .join(OrganizationMembership, OrganizationMembership.organization_id == Organization.id)
                .where(OrganizationMembership.user_id == user_id)
                .order_by(Organization.id)
            )
        ).scalars()
    )


async def get_organization(session: AsyncSession, org_id: str) -> Organization:
    org = await session.get(Organization, org_id)
    if org is None:
        raise NotFound(f"Organization {org_id!r} was not found.")
    return org


# --- web sign-in --------------------------------------------------------------------------------


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()


async def get_user(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def set_password(session: AsyncSession, email: str, password_hash: str) -> User:
    user = await user_by_email(session, email)
    if user is None:
        raise NotFound(f"No user has the email {email!r}. Create it with `outpost admin bootstrap` first.")
    user.password_hash = password_hash
    await session.flush()
    return user


async def user_token_active(session: AsyncSession, token_id: str, user_id: str) -> bool:
    """Whether a web session begun with this API token may continue (the token is not revoked)."""
    row = (
        await session.execute(
            select(UserToken.id).where(
                UserToken.id == token_id, UserToken.user_id == user_id, UserToken.revoked_at.is_(None)
            )
        )
    ).first()
    return row is not None

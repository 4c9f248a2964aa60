"""Sign-in: magic links, browser sessions, personal API tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth import tokens
from taskmachine.auth.principal import Principal
from taskmachine.domain import validate
from taskmachine.domain.errors import BadInput, NotFound, Unauthenticated
from taskmachine.models import ApiToken, MagicLink, User, UserSession, utcnow

LAST_USED_RESOLUTION_SECONDS = 60
# Set in `session.info` when resolving a token wrote its last-used stamp: an operation that
# would not commit (a query) commits for it (taskmachine.schema.scope).
STAMP_KEY = "taskmachine.auth.stamped"


@dataclass(frozen=True)
class IssuedSecret:
    secret: str
    expires_at: datetime | None


async def get_or_create_user(session: AsyncSession, email: str) -> User:
    address = validate.email(email)
    user = await session.scalar(sa.select(User).where(User.email == address))
    if user is None:
        user = User(email=address, name=address.split("@", 1)[0])
        session.add(user)
        await session.flush()
    return user


async def create_magic_link(
    session: AsyncSession, hasher: tokens.TokenHasher, email: str, ttl_seconds: int
) -> IssuedSecret:
    address = validate.email(email)
    secret = tokens.new_secret(tokens.MAGIC_LINK_PREFIX)
    expires_at = utcnow() + timedelta(seconds=ttl_seconds)
    session.add(MagicLink(email=address, token_hash=hasher.hash(secret), expires_at=expires_at))
    await session.flush()
    return IssuedSecret(secret, expires_at)


async def consume_magic_link(
    session: AsyncSession, hasher: tokens.TokenHasher, secret: str, session_ttl_seconds: int
) -> tuple[User, IssuedSecret]:
    """A link works once and only before it expires; it opens a browser session."""
    now = utcnow()
    # A conditional update marks the link used exactly once, even under concurrent clicks.
    email = await session.scalar(
        sa.update(MagicLink)
        .where(
            MagicLink.token_hash == hasher.hash(secret),
            MagicLink.used_at.is_(None),
            MagicLink.expires_at > now,
        )
        .values(used_at=now)
        .returning(MagicLink.email)
    )
    if email is None:
        raise Unauthenticated("this sign-in link is invalid, expired or already used")
    user = await get_or_create_user(session, email)
    return user, await open_session(session, hasher, user.id, session_ttl_seconds)


async def open_session(
    session: AsyncSession, hasher: tokens.TokenHasher, user_id: uuid.UUID, ttl_seconds: int
) -> IssuedSecret:
    secret = tokens.new_secret(tokens.SESSION_PREFIX)
    expires_at = utcnow() + timedelta(seconds=ttl_seconds)
    session.add(UserSession(user_id=user_id, token_hash=hasher.hash(secret), expires_at=expires_at))
    await session.flush()
    return IssuedSecret(secret, expires_at)


async def close_session(session: AsyncSession, hasher: tokens.TokenHasher, secret: str) -> None:
    await session.execute(
        sa.update(UserSession)
        .where(UserSession.token_hash == hasher.hash(secret), UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def principal_for_session(
    session: AsyncSession, hasher: tokens.TokenHasher, secret: str
) -> Principal | None:
    user_id = await session.scalar(
        sa.select(UserSession.user_id).where(
            UserSession.token_hash == hasher.hash(secret),
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > utcnow(),
        )
    )
    return Principal(user_id=user_id, via="session") if user_id else None


async def principal_for_api_token(
    session: AsyncSession, hasher: tokens.TokenHasher, secret: str
) -> Principal | None:
    now = utcnow()
    row = (
        await session.execute(
            sa.select(ApiToken.id, ApiToken.user_id, ApiToken.last_used_at).where(
                ApiToken.token_hash == hasher.hash(secret),
                ApiToken.revoked_at.is_(None),
                sa.or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
            )
        )
    ).first()
    if row is None:
        return None
    # At most once a minute, so a read request does not write (on SQLite a write takes the lock),
    # and most requests do not even send the statement. The WHERE keeps concurrent stamps to one.
    stale = now - timedelta(seconds=LAST_USED_RESOLUTION_SECONDS)
    if row.last_used_at is None or row.last_used_at < stale:
        session.info[STAMP_KEY] = True
        await session.execute(
            sa.update(ApiToken)
            .where(
                ApiToken.id == row.id,
                sa.or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < stale),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
    return Principal(user_id=row.user_id, via="token")


async def create_api_token(
    session: AsyncSession,
    hasher: tokens.TokenHasher,
    user_id: uuid.UUID,
    name: str,
    expires_in_days: int | None,
) -> tuple[ApiToken, str]:
    cleaned = validate.text(name, "name", max_length=120)
    if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
        raise BadInput("expiresInDays must be between 1 and 3650", field="expiresInDays")
    secret = tokens.new_secret(tokens.PERSONAL_TOKEN_PREFIX)
    token = ApiToken(
        user_id=user_id,
        name=cleaned,
        prefix=secret[: len(tokens.PERSONAL_TOKEN_PREFIX) + 4],
        token_hash=hasher.hash(secret),
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(token)
    await session.flush()
    return token, secret


async def revoke_api_token(
    session: AsyncSession, user_id: uuid.UUID, token_id: uuid.UUID
) -> ApiToken:
    token = await session.get(ApiToken, token_id)
    if token is None or token.user_id != user_id:
        raise NotFound("no such token")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        await session.flush()
    return token


async def update_profile(session: AsyncSession, user_id: uuid.UUID, name: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    user.name = validate.text(name, "name", max_length=120)
    await session.flush()
    return user

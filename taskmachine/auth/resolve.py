"""From a presented secret to a Principal, by the secret's prefix.

Later parts (machine tokens, run tokens) register their own resolvers for their prefixes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from taskmachine.auth import tokens
from taskmachine.auth.principal import Principal
from taskmachine.db import SessionFactory
from taskmachine.domain import machines, people, runs

Resolver = Callable[[AsyncSession, tokens.TokenHasher, str], Awaitable[Principal | None]]

RESOLVERS: dict[str, Resolver] = {
    tokens.SESSION_PREFIX: people.principal_for_session,
    tokens.PERSONAL_TOKEN_PREFIX: people.principal_for_api_token,
    tokens.MACHINE_ACCESS_PREFIX: machines.principal_for_machine_token,
    tokens.RUN_TOKEN_PREFIX: runs.principal_for_run_token,
}

SESSION_COOKIE = "tm_session"


def register(prefix: str, resolver: Resolver) -> None:
    RESOLVERS[prefix] = resolver


async def principal_for_secret(
    session_factory: SessionFactory, hasher: tokens.TokenHasher, secret: str
) -> Principal | None:
    """In a session of its own, committed (a token's last-used stamp)."""
    if not any(secret.startswith(prefix) for prefix in RESOLVERS):
        return None
    async with session_factory() as session:
        principal = await principal_in_session(session, hasher, secret)
        await session.commit()
        return principal


async def principal_in_session(
    session: AsyncSession, hasher: tokens.TokenHasher, secret: str
) -> Principal | None:
    """In the caller's session, which commits or not; a resolver that wrote (the last-used
    stamp) says so under `people.STAMP_KEY` in `session.info`."""
    for prefix, resolver in RESOLVERS.items():
        if secret.startswith(prefix):
            return await resolver(session, hasher, secret)
    return None


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None

"""Console sessions: a row per sign-in, so every worker verifies it and sign-out is final.

The cookie carries a random id (signed); the store keeps only its digest. A session is
live while it is neither revoked nor expired and its token is still live: revoking or
expiring the token ends its sessions too, and so does rotating it (whoever signed in with
the secret it replaces, a leaked one maybe, must sign in again with the new one).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, delete, insert, or_, select, update

from routing_points.store.schema import console_sessions, operations, platform_tokens, tokens
from routing_points.store.secrets import hash_secret


@dataclass(frozen=True, slots=True)
class Signer:
    """Who a console request acts as: one operation's admin token, or a platform token."""

    kind: str  # "admin" or "platform"
    token_id: int
    nomenclature: str | None  # None for platform tokens: every operation
    description: str

    @property
    def actor(self) -> str:
        what = "platform token" if self.kind == "platform" else "token"
        return f"console:{what} {self.token_id}"


@dataclass(frozen=True, slots=True)
class Session:
    signer: Signer
    csrf: str
    expires_at: int


def _live(expires: ColumnElement[Any], now: int) -> ColumnElement[bool]:
    return or_(expires.is_(None), expires > now)


def signer_for_secret(engine: Engine, secret: str) -> Signer | None:
    """The admin or platform token with this secret, if it is live; read tokens never sign in."""
    digest, now = hash_secret(secret), int(time.time())
    with engine.connect() as conn:
        row = conn.execute(
            select(tokens.c.id, operations.c.nomenclature, tokens.c.description)
            .select_from(tokens.join(operations, operations.c.id == tokens.c.operation_id))
            .where(tokens.c.secret_hash == digest)
            .where(tokens.c.scope == "admin")
            .where(tokens.c.revoked_at.is_(None))
            .where(_live(tokens.c.expires_at, now))
        ).one_or_none()
        if row is not None:
            return Signer("admin", row.id, row.nomenclature, row.description)
        platform = conn.execute(
            select(platform_tokens.c.id, platform_tokens.c.description)
            .where(platform_tokens.c.secret_hash == digest)
            .where(platform_tokens.c.revoked_at.is_(None))
            .where(_live(platform_tokens.c.expires_at, now))
        ).one_or_none()
    if platform is not None:
        return Signer("platform", platform.id, None, platform.description)
    return None


def open_session(engine: Engine, signer: Signer, address: str, ttl_s: int) -> tuple[str, Session]:
    """A new session: (its id, for the cookie only), the session."""
    session_id, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), int(time.time())
    with engine.begin() as conn:
        # Sessions past their end serve no one: dropped as new ones open.
        conn.execute(delete(console_sessions).where(console_sessions.c.expires_at < now))
        conn.execute(
            insert(console_sessions).values(
                id_hash=hash_secret(session_id),
                token_id=signer.token_id if signer.kind == "admin" else None,
                platform_token_id=signer.token_id if signer.kind == "platform" else None,
                csrf=csrf,
                address=address[:64],
                created_at=now,
                expires_at=now + ttl_s,
            )
        )
    return session_id, Session(signer, csrf, now + ttl_s)


def find_session(engine: Engine, session_id: str) -> Session | None:
    now = int(time.time())
    s = console_sessions.c
    with engine.connect() as conn:
        row = conn.execute(
            select(s.token_id, s.platform_token_id, s.csrf, s.expires_at)
            .where(s.id_hash == hash_secret(session_id))
            .where(s.revoked_at.is_(None))
            .where(s.expires_at > now)
        ).one_or_none()
        if row is None:
            return None
        if row.token_id is not None:
            token = conn.execute(
                select(tokens.c.id, operations.c.nomenclature, tokens.c.description)
                .select_from(tokens.join(operations, operations.c.id == tokens.c.operation_id))
                .where(tokens.c.id == row.token_id)
                .where(tokens.c.scope == "admin")
                .where(tokens.c.revoked_at.is_(None))
                .where(_live(tokens.c.expires_at, now))
            ).one_or_none()
            if token is None:
                return None
            signer = Signer("admin", token.id, token.nomenclature, token.description)
        else:
            platform = conn.execute(
                select(platform_tokens.c.id, platform_tokens.c.description)
                .where(platform_tokens.c.id == row.platform_token_id)
                .where(platform_tokens.c.revoked_at.is_(None))
                .where(_live(platform_tokens.c.expires_at, now))
            ).one_or_none()
            if platform is None:
                return None
            signer = Signer("platform", platform.id, None, platform.description)
    return Session(signer, row.csrf, row.expires_at)


def end_sessions_of(conn: Connection, token_id: int) -> None:
    """End every console session an operation's token signed in: in the caller's
    transaction, the one that replaces its secret."""
    s = console_sessions.c
    conn.execute(
        update(console_sessions)
        .where(s.token_id == token_id)
        .where(s.revoked_at.is_(None))
        .values(revoked_at=int(time.time()))
    )


def close_session(engine: Engine, session_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(console_sessions)
            .where(console_sessions.c.id_hash == hash_secret(session_id))
            .values(revoked_at=int(time.time()))
        )

"""Console sign-in: signed, HttpOnly, SameSite=Strict cookies backed by a session row.

The cookie holds a random session id signed with the console key (itsdangerous, with a
timestamp so a stolen old cookie expires even if its row were kept); the store holds only
the id's digest, so every worker can verify it and sign-out revokes it at once. Every form
carries the session's CSRF token; the sign-in form, before any session, carries one that
matches a short-lived signed cookie (double submit).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets

from itsdangerous import BadSignature, TimestampSigner
from sqlalchemy import Engine, select
from starlette.requests import Request
from starlette.responses import Response

from routing_points.server.addresses import ClientAddress
from routing_points.settings import Settings
from routing_points.store.engine import dialect_insert
from routing_points.store.schema import meta
from routing_points.store.sessions import Session, find_session

COOKIE = "rp_console"
SIGNIN_COOKIE = "rp_console_signin"
SIGNIN_TTL_S = 3600
KEY_META = "console_key"


def console_key(engine: Engine) -> str:
    """The store's console key, created once: the first worker to start wins any race."""
    with engine.begin() as conn:
        conn.execute(
            dialect_insert(conn)(meta)
            .values(key=KEY_META, value=secrets.token_urlsafe(48))
            .on_conflict_do_nothing(index_elements=[meta.c.key])
        )
        return str(conn.execute(select(meta.c.value).where(meta.c.key == KEY_META)).scalar_one())


class Cookies:
    def __init__(self, settings: Settings, addresses: ClientAddress) -> None:
        self.settings = settings
        self._signer: TimestampSigner | None = None
        self._addresses = addresses  # the console's: who is a trusted proxy

    def _https(self, request: Request) -> bool:
        """Whether the browser spoke HTTPS: to us, or to a trusted proxy in front of us."""
        if request.url.scheme == "https":
            return True
        peer = request.client.host if request.client else None
        return self._addresses.forwarded_https(peer, request.headers.get("x-forwarded-proto"))

    async def signer(self, engine: Engine) -> TimestampSigner:
        if self._signer is None:
            key = self.settings.console_secret
            if key is None:
                key = await asyncio.to_thread(console_key, engine)
            self._signer = TimestampSigner(key, salt="routing-points-console")
        return self._signer

    def _set(self, request: Request, response: Response, name: str, value: str, ttl: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=ttl,
            path="/console",
            httponly=True,
            samesite="strict",
            secure=self._https(request),
        )

    async def session(self, request: Request, engine: Engine) -> tuple[str, Session] | None:
        """(session id, session) of a live, correctly signed session cookie, or None."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        signer = await self.signer(engine)
        try:
            session_id = signer.unsign(raw, max_age=self.settings.console_session_ttl_s).decode()
        except BadSignature:
            return None
        session = await asyncio.to_thread(find_session, engine, session_id)
        return None if session is None else (session_id, session)

    async def start(
        self, request: Request, response: Response, engine: Engine, session_id: str
    ) -> None:
        signer = await self.signer(engine)
        value = signer.sign(session_id).decode()
        self._set(request, response, COOKIE, value, self.settings.console_session_ttl_s)
        response.delete_cookie(SIGNIN_COOKIE, path="/console")

    @staticmethod
    def end(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")

    async def signin_csrf(
        self, request: Request, response: Response, engine: Engine, token: str
    ) -> None:
        """The sign-in form's CSRF token, also set in its own signed cookie."""
        signer = await self.signer(engine)
        self._set(request, response, SIGNIN_COOKIE, signer.sign(token).decode(), SIGNIN_TTL_S)

    async def signin_csrf_ok(self, request: Request, engine: Engine, given: str) -> bool:
        raw = request.cookies.get(SIGNIN_COOKIE, "")
        signer = await self.signer(engine)
        try:
            expected = signer.unsign(raw, max_age=SIGNIN_TTL_S).decode()
        except BadSignature:
            return False
        return bool(given) and hmac.compare_digest(expected, given)


def csrf_ok(session: Session, given: object) -> bool:
    return isinstance(given, str) and bool(given) and hmac.compare_digest(session.csrf, given)

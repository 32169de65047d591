"""The console's pages and forms, under /console/.

Every page needs a live session; an admin token's session sees its own operation only
(another operation's pages answer 404, as if they did not exist), a platform token's sees
every operation. Every POST checks the session's CSRF token before anything else. Every
change is written to the audit log with the session's token and the caller's address.
Store work runs in a thread, like the admin API's.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from jinja2 import Environment, FileSystemLoader
from sqlalchemy import Engine
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from routing_points.console import charts, data
from routing_points.console.auth import Cookies, csrf_ok
from routing_points.server.addresses import ClientAddress
from routing_points.settings import Settings
from routing_points.store import access, audit, tenants
from routing_points.store import errors as store_errors
from routing_points.store.records import MAX_RP_ID
from routing_points.store.sessions import Session, close_session, open_session, signer_for_secret

T = TypeVar("T")
HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


class RowId(Convertor[int]):
    """An id in a console path: 1 to 19 digits (longer: 404). Past a BIGINT it is 0, an id
    no row has, so the page says it does not exist (the store would refuse the number)."""

    regex = "[0-9]{1,19}"

    def convert(self, value: str) -> int:
        number = int(value)
        return number if number <= MAX_RP_ID else 0

    def to_string(self, value: int) -> str:
        return str(value)


class Stop(Exception):
    """Answer with this response now (a redirect to sign in, a 404, a refused form)."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


S = TypeVar("S")
Method = Callable[[S, Request], Awaitable[Response]]


def stops(handler: Method[S]) -> Method[S]:
    """A page method that may raise Stop, answered with the Stop's response."""

    @functools.wraps(handler)
    async def endpoint(self: S, request: Request) -> Response:
        try:
            return await handler(self, request)
        except Stop as stop:
            return stop.response

    return endpoint


class Console:
    def __init__(
        self,
        settings: Settings,
        engine: Callable[[], Engine | None],
        count_charges: Callable[[], Awaitable[None]],
        wrote: Callable[[], None],
        point_writes_refused: Callable[[], str | None],
    ) -> None:
        self.settings = settings
        self._engine = engine
        # Before a page shows usage: every charge made so far counted (server/services.py).
        self.count_charges = count_charges
        # After a form changed the store: this worker looks tokens up afresh (as after an
        # admin API write), so an API call right after the change sees it.
        self.wrote = wrote
        # Why this server takes no changes to routing points (a mirror's), or None.
        self.point_writes_refused = point_writes_refused
        self.client_address = ClientAddress(settings.trusted_proxies)
        self.cookies = Cookies(settings, self.client_address)
        environment = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
        self.templates = Jinja2Templates(env=environment)

    @property
    def engine(self) -> Engine:
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the app's lifespan has not started")
        return engine

    async def run(self, work: Callable[[], T]) -> T:
        return await asyncio.to_thread(work)

    # -- plumbing ----------------------------------------------------------------------

    def address(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        return self.client_address(peer, request.headers.get("x-forwarded-for"))

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        status: int = 200,
    ) -> Response:
        return self.templates.TemplateResponse(
            request, template, context, status_code=status, headers=SECURITY_HEADERS
        )

    def error_page(
        self, request: Request, status: int, message: str, session: Session | None = None
    ) -> Response:
        # A signed-in operator keeps the navigation of their own operation (it vanished).
        own = None if session is None else session.signer.nomenclature
        context = {"message": message, "session": session, "server": own, "title": "Error"}
        return self.render(request, "error.html", context, status)

    async def session(self, request: Request, server: str | None = None) -> Session:
        """The live session, allowed to see `server`; else a redirect or a 404 page."""
        found = await self.cookies.session(request, self.engine)
        if found is None:
            raise Stop(RedirectResponse("/console/signin", status_code=303))
        session = found[1]
        if server is not None:
            own = session.signer.nomenclature
            missing = own is not None and own != server
            if own is None:
                try:
                    await self.run(functools.partial(tenants.get_operation, self.engine, server))
                except store_errors.NotFound:
                    missing = True
            if missing:
                raise Stop(self.error_page(request, 404, "There is no such page here.", session))
        if request.method == "POST":
            form = await request.form()
            if not csrf_ok(session, form.get("csrf")):
                raise Stop(
                    self.error_page(
                        request,
                        403,
                        "This form has expired or did not come from this console "
                        "(its security token is missing). Reload the page and try again.",
                        session,
                    )
                )
        return session

    def points_writable(self, request: Request, session: Session) -> None:
        """Refuse a change to routing points where the server takes none (a mirror)."""
        refused = self.point_writes_refused()
        if refused is not None:
            raise Stop(self.error_page(request, 403, f"{refused.capitalize()}.", session))

    def platform_only(self, request: Request, session: Session) -> None:
        if session.signer.kind != "platform":
            raise Stop(self.error_page(request, 404, "There is no such page here.", session))

    async def record(
        self,
        request: Request,
        session: Session,
        action: str,
        server: str | None,
        detail: dict[str, Any],
    ) -> None:
        await self.run(
            functools.partial(
                audit.record,
                self.engine,
                actor=session.signer.actor,
                address=self.address(request),
                action=action,
                nomenclature=server,
                detail=detail,
                retention_days=self.settings.audit_retention_days,
            )
        )

    def page(
        self, request: Request, session: Session, server: str | None, template: str, **context: Any
    ) -> Response:
        status = int(context.pop("status", 200))
        return self.render(
            request,
            template,
            {"session": session, "server": server, "csrf": session.csrf, **context},
            status,
        )

    # -- sign-in -------------------------------------------------------------------------

    async def not_found(self, request: Request) -> Response:
        found = await self.cookies.session(request, self.engine)  # the signed-in keep their nav
        session = None if found is None else found[1]
        return self.error_page(request, 404, "There is no such page in the console.", session)

    @stops
    async def home(self, request: Request) -> Response:
        session = await self.session(request)
        own = session.signer.nomenclature
        target = "/console/operations" if own is None else f"/console/o/{own}/"
        return RedirectResponse(target, status_code=303)

    async def signin_page(self, request: Request, error: str = "", status: int = 200) -> Response:
        csrf = secrets.token_urlsafe(32)
        context = {"session": None, "server": None, "error": error, "csrf": csrf}
        response = self.render(request, "signin.html", {**context, "title": "Sign in"}, status)
        await self.cookies.signin_csrf(request, response, self.engine, csrf)
        return response

    async def signin(self, request: Request) -> Response:
        if request.method in ("GET", "HEAD"):  # HEAD was taken for a post: a 403
            return await self.signin_page(request)
        form = await request.form()
        given = form.get("csrf")
        if not isinstance(given, str) or not await self.cookies.signin_csrf_ok(
            request, self.engine, given
        ):
            return await self.signin_page(
                request, "The sign-in form expired: please try again.", 403
            )
        secret = form.get("token")
        signer = None
        if isinstance(secret, str) and secret.strip():
            signer = await self.run(
                functools.partial(signer_for_secret, self.engine, secret.strip())
            )
        if signer is None:
            return await self.signin_page(
                request,
                "That token cannot sign in: it must be a live admin or platform token.",
                403,
            )
        address = self.address(request)
        session_id, session = await self.run(
            functools.partial(
                open_session, self.engine, signer, address, self.settings.console_session_ttl_s
            )
        )
        await self.record(request, session, "console.signin", signer.nomenclature, {})
        own = signer.nomenclature
        response = RedirectResponse(
            "/console/operations" if own is None else f"/console/o/{own}/", status_code=303
        )
        await self.cookies.start(request, response, self.engine, session_id)
        return response

    @stops
    async def signout(self, request: Request) -> Response:
        found = await self.cookies.session(request, self.engine)
        response = RedirectResponse("/console/signin", status_code=303)
        if found is not None:
            session_id, session = found
            form = await request.form()
            if not csrf_ok(session, form.get("csrf")):
                return self.error_page(request, 403, "This form has expired.", session)
            await self.run(functools.partial(close_session, self.engine, session_id))
            await self.record(request, session, "console.signout", session.signer.nomenclature, {})
        self.cookies.end(response)
        return response

    # -- routes --------------------------------------------------------------------------

    def writes(
        self, page: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A page whose form changes the store: `wrote` once a POST of it has ended."""

        async def endpoint(request: Request) -> Response:
            try:
                return await page(request)
            finally:
                if request.method == "POST":
                    self.wrote()

        return endpoint

    def routes(self) -> list[BaseRoute]:
        from routing_points.console.operation import OperationPages
        from routing_points.console.reports import ReportPages

        pages, reports = OperationPages(self), ReportPages(self)
        register_url_convertor("row_id", RowId())  # idempotent
        o = "/console/o/{server:str}"
        writes = self.writes
        return [
            Route("/console", lambda _r: RedirectResponse("/console/", 308), methods=["GET"]),
            Route("/console/", self.home, methods=["GET"]),
            Route("/console/signin", self.signin, methods=["GET", "POST"]),
            Route("/console/signout", self.signout, methods=["POST"]),
            Route("/console/operations", writes(pages.operations), methods=["GET", "POST"]),
            Route(f"{o}/", pages.overview, methods=["GET"]),
            Route(f"{o}/settings", writes(pages.settings), methods=["POST"]),
            Route(f"{o}/tokens", writes(pages.tokens), methods=["GET", "POST"]),
            Route(
                f"{o}/tokens/{{token_id:row_id}}/{{action:str}}",
                writes(pages.token),
                methods=["POST"],
            ),
            Route(f"{o}/points", pages.points, methods=["GET"]),
            Route(f"{o}/points.csv", pages.points_csv, methods=["GET"]),
            Route(f"{o}/points/import", writes(pages.points_import), methods=["POST"]),
            Route(f"{o}/points/{{rp_id:row_id}}", writes(pages.point), methods=["GET", "POST"]),
            Route(f"{o}/usage", reports.usage, methods=["GET"]),
            Route(f"{o}/usage.csv", reports.usage_csv, methods=["GET"]),
            Route(f"{o}/allowlist", writes(pages.allowlist), methods=["GET", "POST"]),
            Route(f"{o}/audit", reports.audit, methods=["GET"]),
            Mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static"),
            # Last: any other console address a browser opens is a page, not JSON.
            Route("/console/{rest:path}", self.not_found, methods=["GET", "POST"]),
        ]


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def upload(form: FormData, name: str) -> UploadFile | None:
    value = form.get(name)
    return value if isinstance(value, UploadFile) else None


__all__ = ["Console", "Stop", "access", "charts", "data", "stops", "text", "upload"]

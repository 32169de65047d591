"""The pages of one operation: overview, tokens, routing points, usage, allow-list, audit;
and the platform's list of operations."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from routing_points.console import charts, data
from routing_points.console.pages import Console, stops, text, upload
from routing_points.limits.policy import TALLIED_REFUSALS
from routing_points.store import access, records, tenants
from routing_points.store import errors as store_errors
from routing_points.store import points as point_store
from routing_points.store.sessions import Session

IDLE_DAYS = 90
YES_NO = ("yes", "no")

# Rows on the points page: 70,000 made a 25 MB page that held the event loop for seconds.
POINTS_SHOWN = 500


def server_of(request: Request) -> str:
    return str(request.path_params["server"])


def _optional_int(value: str, what: str) -> int | None:
    """A form's whole number; its bounds are the store's, which names them."""
    if not value:
        return None
    if value.isascii() and value.isdigit() and not records.digits(value):
        # A whole number, but longer than any the store can hold: it is too large, and
        # the message said it must be a whole number.
        shown = value if len(value) <= 24 else f"{value[:24]}..."
        raise store_errors.Invalid(f"{what}: {shown} is far too large")
    if not records.digits(value) or int(value) < 1:
        raise store_errors.Invalid(f"{what}: must be a whole number of at least 1")
    return int(value)


def csv_response(body: str, filename: str) -> Response:
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="{filename}"',
            "cache-control": "no-store",
        },
    )


class OperationPages:
    def __init__(self, console: Console) -> None:
        self.c = console

    # -- platform ------------------------------------------------------------------------

    @stops
    async def operations(self, request: Request) -> Response:
        c = self.c
        session = await c.session(request)
        c.platform_only(request, session)
        error, status = "", 200
        if request.method == "POST":
            form = await request.form()
            try:
                licenses = _optional_int(text(form, "licenses"), "licenses") or 0
                created = await c.run(
                    functools.partial(
                        tenants.add_operation,
                        c.engine,
                        text(form, "server"),
                        text(form, "name"),
                        licenses,
                        text(form, "timezone") or "UTC",
                    )
                )
            except store_errors.StoreError as exc:
                error, status = str(exc), 400
            else:
                await c.record(
                    request,
                    session,
                    "operation.create",
                    created.nomenclature,
                    {
                        "name": created.name,
                        "licenses": created.licenses,
                        "timezone": created.timezone,
                    },
                )
                return RedirectResponse(f"/console/o/{created.nomenclature}/", status_code=303)
        found = await c.run(functools.partial(tenants.list_operations, c.engine))
        return c.page(
            request,
            session,
            None,
            "operations.html",
            title="Operations",
            operations=found,
            per_license=c.settings.daily_calls_per_license,
            error=error,
            status=status,
        )

    @stops
    async def settings(self, request: Request) -> Response:
        c, server = self.c, server_of(request)
        session = await c.session(request, server)
        c.platform_only(request, session)
        form = await request.form()
        try:
            changed = await c.run(
                functools.partial(
                    access.set_operation,
                    c.engine,
                    server,
                    name=text(form, "name") or None,
                    licenses=_optional_int(text(form, "licenses"), "licenses"),
                    timezone=text(form, "timezone") or None,
                )
            )
        except store_errors.StoreError as exc:
            return await self._overview(request, session, server, error=str(exc), status=400)
        await c.record(
            request,
            session,
            "operation.update",
            server,
            {"name": changed.name, "licenses": changed.licenses, "timezone": changed.timezone},
        )
        return RedirectResponse(f"/console/o/{server}/", status_code=303)

    # -- overview ------------------------------------------------------------------------

    @stops
    async def overview(self, request: Request) -> Response:
        server = server_of(request)
        session = await self.c.session(request, server)
        return await self._overview(request, session, server)

    async def _overview(
        self, request: Request, session: Session, server: str, error: str = "", status: int = 200
    ) -> Response:
        c = self.c
        await c.count_charges()
        view = await c.run(
            functools.partial(data.overview, c.engine, server, c.settings.daily_calls_per_license)
        )
        series = [charts.Series(name, values) for name, values in view.per_token.items()]
        return c.page(
            request,
            session,
            server,
            "overview.html",
            title=f"Overview of {server}",
            view=view,
            gauge=charts.gauge(view.used, view.budget, "Today's budget"),
            chart=charts.stacked_bars(view.days, series, "Calls per day"),
            series=series,
            reset_in=data.duration(view.seconds_to_reset),
            refusal_kinds=TALLIED_REFUSALS,
            error=error,
            status=status,
        )

    # -- tokens --------------------------------------------------------------------------

    @stops
    async def tokens(self, request: Request) -> Response:
        c, server = self.c, server_of(request)
        session = await c.session(request, server)
        if request.method == "GET":
            return await self._tokens(request, session, server)
        form = await request.form()
        scope = text(form, "scope") or "read"
        # The newest token the form saw: a reload posts it again, and creates nothing.
        after = text(form, "after")
        try:
            limit = _optional_int(text(form, "daily_limit"), "daily limit")
            expires_text = text(form, "expires")
            expires = access.parse_expiry(expires_text) if expires_text else None
            created = await c.run(
                functools.partial(
                    tenants.add_token,
                    c.engine,
                    server,
                    text(form, "description"),
                    limit,
                    scope,
                    expires,
                    after_id=int(after) if records.digits(after) else None,
                )
            )
        except store_errors.StoreError as exc:
            # The form comes back as it was typed, the description with it (it came back
            # empty, to be typed again).
            typed = {name: text(form, name) for name in ("description", "scope", "daily_limit")}
            typed["expires"] = text(form, "expires")
            return await self._tokens(
                request, session, server, error=str(exc), status=400, typed=typed
            )
        await c.record(
            request,
            session,
            "token.create",
            server,
            {
                "token_id": created.id,
                "description": text(form, "description"),
                "scope": scope,
                "daily_limit": limit,
                "expires_at": expires,
            },
        )
        return await self._tokens(
            request, session, server, secret=created.secret, secret_id=created.id
        )

    @stops
    async def token(self, request: Request) -> Response:
        c, server = self.c, server_of(request)
        session = await c.session(request, server)
        token_id, action = int(request.path_params["token_id"]), request.path_params["action"]
        form = await request.form()
        secret = ""
        try:
            if action == "revoke":
                if (
                    await c.run(functools.partial(access.token_operation, c.engine, token_id))
                    != server
                ):
                    raise store_errors.NotFound(f"token {token_id} does not exist")
                await c.run(functools.partial(tenants.revoke_token, c.engine, token_id))
                detail: dict[str, Any] = {"token_id": token_id}
            elif action == "rotate":
                rotated = await c.run(
                    functools.partial(
                        access.rotate_token,
                        c.engine,
                        server,
                        token_id,
                        text(form, "version"),
                        tenants.DEFAULT_GRACE_S,
                    )
                )
                secret = rotated.secret
                detail = {"token_id": token_id, "grace_s": tenants.DEFAULT_GRACE_S}
            elif action == "terms":
                limit = _optional_int(text(form, "daily_limit"), "daily limit")
                expires_text = text(form, "expires")
                expires = access.parse_expiry(expires_text) if expires_text else None
                await c.run(
                    functools.partial(
                        access.set_token_terms,
                        c.engine,
                        server,
                        token_id,
                        daily_limit=limit,
                        expires_at=expires,
                    )
                )
                detail = {"token_id": token_id, "daily_limit": limit, "expires_at": expires}
            else:
                return c.error_page(request, 404, "There is no such page here.", session)
        except store_errors.StoreError as exc:
            return await self._tokens(request, session, server, error=str(exc), status=400)
        await c.record(request, session, f"token.{action}", server, detail)
        if secret:
            return await self._tokens(
                request, session, server, secret=secret, secret_id=token_id, rotated=True
            )
        return RedirectResponse(f"/console/o/{server}/tokens", status_code=303)

    async def _tokens(
        self,
        request: Request,
        session: Session,
        server: str,
        *,
        error: str = "",
        status: int = 200,
        secret: str = "",
        secret_id: int | None = None,
        typed: dict[str, str] | None = None,
        rotated: bool = False,
    ) -> Response:
        c = self.c
        operation, views = await c.run(functools.partial(access.token_views, c.engine, server))
        zone = operation.timezone
        today = datetime.now(ZoneInfo(zone)).date()
        now = datetime.now(UTC).timestamp()
        rows = []
        for view in views:
            flags = []
            live = view.revoked_at is None and (view.expires_at is None or view.expires_at > now)
            if view.daily_limit is None:
                flags.append("no limit")
            if view.expires_at is None:
                flags.append("no expiry")
            last = date.fromisoformat(view.last_used_day) if view.last_used_day else None
            created = datetime.fromtimestamp(view.created_at, ZoneInfo(zone)).date()
            if live and (today - (last or created)).days >= IDLE_DAYS:
                flags.append(f"idle {IDLE_DAYS} days")
            state = "revoked" if view.revoked_at is not None else "live" if live else "expired"
            rows.append(
                {
                    "view": view,
                    "flags": flags,
                    "state": state,
                    "live": live,
                    "created": data.local_time(view.created_at, zone),
                    "expires": data.local_time(view.expires_at, zone),
                    "revoked": data.local_time(view.revoked_at, zone),
                }
            )
        return c.page(
            request,
            session,
            server,
            "tokens.html",
            title=f"Tokens of {server}",
            rows=rows,
            error=error,
            secret=secret,
            secret_id=secret_id,
            typed=typed or {},
            # A form posted twice (a reload) must not act twice: the create form names the
            # newest token, each rotate form its token's secret.
            newest_id=max((view.id for view in views), default=0),
            rotated=rotated,
            grace=f"{tenants.DEFAULT_GRACE_S // 60} min",
            status=status,
        )

    # -- routing points ------------------------------------------------------------------

    @stops
    async def points(self, request: Request) -> Response:
        server = server_of(request)
        session = await self.c.session(request, server)
        # What the form just done did, told by the redirect after it (so that reloading
        # the page repeats no import and no save): ?imported=N&unchanged=M, ?saved=ID.
        query = request.query_params
        imported = None
        counts = [query.get("imported", ""), query.get("unchanged", "0")]
        if all(records.digits(count) for count in counts) and int(counts[1]) <= int(counts[0]):
            imported = point_store.UpsertResult(int(counts[0]), 0, int(counts[1]))
        saved = query.get("saved", "")
        return await self._points(
            request,
            session,
            server,
            imported=imported,
            saved=saved if records.digits(saved) else "",
            saved_unchanged=query.get("unchanged") == "1",
        )

    async def _points(
        self,
        request: Request,
        session: Session,
        server: str,
        *,
        problems: list[str] | None = None,
        imported: point_store.UpsertResult | None = None,
        saved: str = "",
        saved_unchanged: bool = False,
        status: int = 200,
    ) -> Response:
        c = self.c
        search = request.query_params.get("q", "")
        flags = {flag: request.query_params.get(flag, "") for flag in data.FLAGS}
        _operation, found = await c.run(
            functools.partial(data.points, c.engine, server, search, flags)
        )
        return c.page(
            request,
            session,
            server,
            "points.html",
            title=f"Routing points of {server}",
            points=found[:POINTS_SHOWN],
            total=len(found),
            search=search,
            flags=flags,
            flag_names=data.FLAGS,
            problems=problems or [],
            imported=imported,
            saved=saved,
            saved_unchanged=saved_unchanged,
            read_only=c.point_writes_refused(),
            status=status,
        )

    @stops
    async def points_csv(self, request: Request) -> Response:
        c, server = self.c, server_of(request)
        await c.session(request, server)
        body = await c.run(functools.partial(data.points_csv, c.engine, server))
        return csv_response(body, f"routing-points-{server}.csv")

    @stops
    async def points_import(self, request: Request) -> Response:
        c, server = self.c, server_of(request)
        session = await c.session(request, server)
        c.points_writable(request, session)
        form = await request.form()
        file = upload(form, "file")
        if file is None or not file.filename:
            return await self._points(
                request, session, server, problems=["choose a CSV file to import"], status=400
            )
        raw = await file.read(c.settings.max_upload_bytes + 1)
        if len(raw) > c.settings.max_upload_bytes:
            problems = [f"the file is larger than {c.settings.max_upload_bytes} bytes"]
            return await self._points(request, session, server, problems=problems, status=400)
        imported, problems = await c.run(
            functools.partial(
                data.import_upload,
                c.engine,
                server,
                raw,
                file.filename,
                c.settings.max_records_per_upload,
            )
        )
        if problems or imported is None:
            return await self._points(request, session, server, problems=problems, status=400)
        await c.record(
            request,
            session,
            "point.import",
            server,
            {
                "file": file.filename,
                "upserted": imported.upserted,
                "unchanged": imported.unchanged,
            },
        )
        told = f"imported={imported.upserted}&unchanged={imported.unchanged}"
        return RedirectResponse(f"/console/o/{server}/points?{told}", status_code=303)

    @stops
    async def point(self, request: Request) -> Response:
        c, server = self.c, server_of(request)
        session = await c.session(request, server)
        rp_id = int(request.path_params["rp_id"])
        error, status = "", 200
        if request.method == "POST":
            c.points_writable(request, session)
            form = await request.form()
            # The fields the form sent (a browser sends them all); the store refuses a flag
            # that is not yes or no.
            given = {name: text(form, name) for name in ("rp_name", *data.FLAGS) if name in form}
            try:
                # Only what differs is written, and audited (every field was, as "changes").
                changed: frozenset[str] = frozenset()
                if given:
                    changed = await c.run(
                        functools.partial(point_store.set_point, c.engine, server, rp_id, given)
                    )
            except store_errors.StoreError as exc:
                error, status = str(exc), 400
            else:
                told = f"saved={rp_id}"
                if changed:
                    # The form's fields are the store's columns, by name.
                    changes = {name: given[name] for name in sorted(changed)}
                    await c.record(
                        request,
                        session,
                        "point.update",
                        server,
                        {"rp_id": rp_id, "changes": changes},
                    )
                else:
                    told += "&unchanged=1"
                return RedirectResponse(f"/console/o/{server}/points?{told}", status_code=303)
        try:
            found = await c.run(functools.partial(data.point, c.engine, server, rp_id))
        except store_errors.NotFound:
            return c.error_page(request, 404, f"Routing point {rp_id} does not exist.", session)
        return c.page(
            request,
            session,
            server,
            "point.html",
            title=f"Routing point {rp_id}",
            point=found,
            flag_names=data.FLAGS,
            read_only=c.point_writes_refused(),
            error=error,
            status=status,
        )

    # -- allow-list ----------------------------------------------------------------------

    @stops
    async def allowlist(self, request: Request) -> Response:
        c, server = self.c, server_of(request)
        session = await c.session(request, server)
        error, status = "", 200
        if request.method == "POST":
            form = await request.form()
            remove = text(form, "remove")
            try:
                if remove:
                    entry = await c.run(
                        functools.partial(access.remove_network, c.engine, server, remove)
                    )
                    action = "allowlist.remove"
                else:
                    entry = await c.run(
                        functools.partial(
                            access.add_network, c.engine, server, text(form, "address")
                        )
                    )
                    action = "allowlist.add"
            except store_errors.StoreError as exc:
                error, status = str(exc), 400
            else:
                await c.record(request, session, action, server, {"network": entry})
                return RedirectResponse(f"/console/o/{server}/allowlist", status_code=303)
        operation, entries = await c.run(functools.partial(access.allowlist, c.engine, server))
        return c.page(
            request,
            session,
            server,
            "allowlist.html",
            title=f"IP allow-list of {server}",
            entries=entries,
            cap=operation.licenses * access.NETWORKS_PER_LICENSE,
            error=error,
            status=status,
            your_address=c.address(request),
        )

"""Admin API for who may call: tokens (with expiry), the IP allow-list, the audit log.

Same pipeline as every admin call (admin scope, its own operation only, costs 1), same
envelope; every change is audited like the other admin writes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from routing_points.server.admin_api import AdminApi
from routing_points.server.errors import BadRequest, InvalidParameters, envelope
from routing_points.store import access, audit, records, tenants
from routing_points.store.reader import Principal


def _epoch_text(epoch: int | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AccessEndpoints:
    def __init__(self, admin: AdminApi) -> None:
        self.admin = admin

    async def tokens(self, request: Request) -> Response:
        """GET lists the operation's tokens (never secrets); POST creates one."""
        admin = self.admin
        if request.method == "GET":

            async def listing(principal: Principal, _payload: Any) -> Response:
                _operation, views = await admin.store(
                    lambda: access.token_views(admin.engine, principal.nomenclature)
                )
                data = [
                    {
                        "id": str(view.id),
                        "description": view.description,
                        "scope": view.scope,
                        "daily_limit": "" if view.daily_limit is None else str(view.daily_limit),
                        "expires_at": _epoch_text(view.expires_at),
                        "revoked_at": _epoch_text(view.revoked_at),
                        "last_used_day": view.last_used_day or "",
                    }
                    for view in views
                ]
                return envelope(200, f"{len(data)} records were found", data)

            return await admin.call(request, listing, with_body=False)

        async def create(principal: Principal, payload: Any) -> Response:
            if not isinstance(payload, dict):
                raise BadRequest(
                    "THE BODY MUST BE AN OBJECT: DESCRIPTION, SCOPE, DAILY_LIMIT, EXPIRES"
                )
            description = payload.get("description", "")
            scope = payload.get("scope", "read")
            limit = payload.get("daily_limit")
            expires = payload.get("expires")
            if not isinstance(description, str) or scope not in ("read", "admin"):
                raise InvalidParameters("DESCRIPTION MUST BE TEXT AND SCOPE READ OR ADMIN")
            if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
                raise InvalidParameters("DAILY_LIMIT MUST BE AN INTEGER")
            if expires is not None and not isinstance(expires, str):
                raise InvalidParameters("EXPIRES MUST BE A DURATION (30d) OR A DATE")
            server = principal.nomenclature

            def write() -> tuple[tenants.NewToken, int | None]:
                expires_at = access.parse_expiry(expires) if expires else None
                token = tenants.add_token(
                    admin.engine, server, description, limit, scope, expires_at
                )
                return token, expires_at

            token, expires_at = await admin.store(write)
            await admin.audit(
                request,
                principal,
                "token.create",
                {
                    "token_id": token.id,
                    "description": description,
                    "scope": scope,
                    "daily_limit": limit,
                    "expires_at": expires_at,
                },
            )
            data = [
                {"id": str(token.id), "secret": token.secret, "expires_at": _epoch_text(expires_at)}
            ]
            return envelope(201, "1 records were created", data)

        return await admin.call(request, create, with_body=True)

    async def allowlist(self, request: Request) -> Response:
        """GET lists the networks; POST {"network"} adds one; DELETE ?network= removes one."""
        admin = self.admin
        if request.method == "GET":

            async def listing(principal: Principal, _payload: Any) -> Response:
                _operation, entries = await admin.store(
                    lambda: access.allowlist(admin.engine, principal.nomenclature)
                )
                return envelope(200, f"{len(entries)} records were found", entries)

            return await admin.call(request, listing, with_body=False)

        async def change(principal: Principal, payload: Any) -> Response:
            server = principal.nomenclature
            if request.method == "POST":
                if not isinstance(payload, dict) or not isinstance(payload.get("network"), str):
                    raise BadRequest('THE BODY MUST BE {"network": "203.0.113.0/24"}')
                entry = await admin.store(
                    lambda: access.add_network(admin.engine, server, payload["network"])
                )
                await admin.audit(request, principal, "allowlist.add", {"network": entry})
                return envelope(201, "1 records were created", [entry])
            text = request.query_params.get("network", "")
            if not text:
                raise InvalidParameters("NETWORK IS REQUIRED")
            entry = await admin.store(lambda: access.remove_network(admin.engine, server, text))
            await admin.audit(request, principal, "allowlist.remove", {"network": entry})
            return envelope(200, "1 records were deleted", None)

        return await admin.call(request, change, with_body=request.method == "POST")

    async def audit_log(self, request: Request) -> Response:
        """GET the operation's audit entries, newest first (?limit=, at most 1000)."""
        admin = self.admin

        async def listing(principal: Principal, _payload: Any) -> Response:
            text = request.query_params.get("limit", "200")
            if not records.digits(text) or not 1 <= int(text) <= 1000:
                raise InvalidParameters("LIMIT MUST BE AN INTEGER FROM 1 TO 1000")
            found = await admin.store(
                lambda: audit.entries(admin.engine, principal.nomenclature, limit=int(text))
            )
            data = [
                {
                    "id": str(entry.id),
                    "at": _epoch_text(entry.at),
                    "actor": entry.actor,
                    "address": entry.address,
                    "action": entry.action,
                    "detail": entry.detail,
                }
                for entry in found
            ]
            return envelope(200, f"{len(data)} records were found", data)

        return await admin.call(request, listing, with_body=False)

"""OpenAPI paths of the admin API's tokens, IP allow-list and audit log."""

from __future__ import annotations

from typing import Any

TEXT = {"type": "string"}


def _answer(items: dict[str, Any], description: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["code", "error", "msg", "data"],
        "properties": {
            "code": {"type": "integer"},
            "error": {"type": "null"},
            "msg": TEXT,
            "data": {"anyOf": [{"type": "array", "items": items}, {"type": "null"}]},
        },
    }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _object(*names: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(names),
        "properties": {name: TEXT for name in names},
    }


def access_paths(
    security: list[dict[str, list[str]]],
    headers: list[dict[str, Any]],
    errors: dict[str, Any],
) -> dict[str, Any]:
    token = _object(
        "id", "description", "scope", "daily_limit", "expires_at", "revoked_at", "last_used_day"
    )
    common = {"security": security, "parameters": headers}
    return {
        "/api/v2/admin/tokens": {
            "get": {
                "operationId": "listTokens",
                "summary": "The operation's tokens, never their secrets",
                **common,
                "responses": {"200": _answer(token, "The tokens."), **errors},
            },
            "post": {
                "operationId": "createToken",
                "summary": "Create a token; its secret is in this answer and never again",
                **common,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "description": {"type": "string", "maxLength": 255},
                                    "scope": {"type": "string", "enum": ["read", "admin"]},
                                    "daily_limit": {"type": "integer", "minimum": 1},
                                    "expires": {
                                        "type": "string",
                                        "description": "A duration (30d, 12h, 90m, 2w), a "
                                        "date (the token lasts through it, UTC) or an ISO "
                                        "8601 date and time. An expired token is refused "
                                        "like a revoked one.",
                                    },
                                },
                                "example": {"description": "BI", "expires": "30d"},
                            }
                        }
                    },
                },
                "responses": {
                    "201": _answer(_object("id", "secret", "expires_at"), "Created."),
                    **errors,
                },
            },
        },
        "/api/v2/admin/allowlist": {
            "get": {
                "operationId": "listAllowedNetworks",
                "summary": "The operation's IP allow-list (empty: every address may call)",
                **common,
                "responses": {"200": _answer(TEXT, "CIDR networks."), **errors},
            },
            "post": {
                "operationId": "allowNetwork",
                "summary": "Add an address or CIDR network (at most 10 per license); a call "
                "from outside the list is refused 403 and costs nothing",
                **common,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["network"],
                                "properties": {"network": TEXT},
                                "example": {"network": "203.0.113.0/24"},
                            }
                        }
                    },
                },
                "responses": {"201": _answer(TEXT, "Added."), **errors},
            },
            "delete": {
                "operationId": "removeNetwork",
                "summary": "Remove an entry",
                "security": security,
                "parameters": [
                    *headers,
                    {"name": "network", "in": "query", "required": True, "schema": TEXT},
                ],
                "responses": {"200": _answer(TEXT, "Removed."), **errors},
            },
        },
        "/api/v2/admin/audit": {
            "get": {
                "operationId": "auditLog",
                "summary": "Every change to the operation (CLI, admin API, console), newest first",
                "security": security,
                "parameters": [
                    *headers,
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": {
                    "200": _answer(
                        _object("id", "at", "actor", "address", "action", "detail"),
                        "Audit entries.",
                    ),
                    **errors,
                },
            },
        },
    }

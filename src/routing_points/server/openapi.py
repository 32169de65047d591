"""The OpenAPI 3.1 description of the whole API, served at /openapi.json.

Written by hand rather than derived from code, because the compatible endpoint is the
vendor's: one path whose answer depends on `api`, errors that are 403 rather than 429,
every value a string. Example values are the contract's own (API.md).
"""

from __future__ import annotations

from typing import Any

from routing_points import __version__, contract
from routing_points.server.openapi_access import access_paths
from routing_points.server.schema_patterns import (
    ANY_LOCAL_TIME,
    EVENT_TIME,
    FLAG_INPUT,
    ID_INPUT,
    ID_PARAMETER,
    LOCAL_TIME,
    NAME_INPUT,
    REPLACE_FLAG,
    REPORT_TIME,
    TOKEN_HEADERS,
)
from routing_points.settings import Settings

RECORD_EXAMPLE = dict(contract.EXAMPLE_RECORD)
YES_NO = {"type": "string", "enum": ["yes", "no"]}
LAST_USE_PATTERN = f"^$|^{LOCAL_TIME}$"
DIGITS = {"type": "string", "pattern": "^[0-9]+$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _envelope(data: Any, example: Any = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["code", "error", "msg", "data"],
        "properties": {
            "code": {"type": "integer"},
            "error": {"type": "null"},
            "msg": {"type": "string"},
            "data": data,
        },
    }
    if example is not None:
        schema["example"] = example
    return schema


def _json(schema: dict[str, Any], description: str, headers: bool = True) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = {
            name: {"$ref": f"#/components/headers/{name}"}
            for name in ("X-Request-ID", "X-Poll-Interval", "RateLimit", "RateLimit-Policy")
        }
    return response


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"Retry-After": {"$ref": "#/components/headers/Retry-After"}},
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _errors(settings: Settings, *statuses: int) -> dict[str, Any]:
    """The error answers of an operation, worded with the contract's messages and this
    server's own limits."""
    described = {
        400: "BAD REQUEST: an unknown api, a malformed parameter or body, a result over L6",
        401: f"UNAUTHORIZED: {contract.MSG_MISSING_TOKEN}",
        403: f"FORBIDDEN: {contract.MSG_INVALID_TOKEN} (unknown, revoked or expired), "
        f"{contract.MSG_TOKEN_LIMIT_EXCEEDED}, "
        f"{contract.too_many_simultaneous(settings.max_in_flight_per_token)}, the minimum "
        "interval, a caller outside the operation's IP allow-list, or a read token on the "
        "admin API",
        404: "NOT FOUND",
        405: "METHOD NOT ALLOWED",
        409: "CONFLICT: the routing point exists",
        413: f"REQUEST ENTITY TOO LARGE: over {settings.max_records_per_upload:,} records (L4) "
        "or the body cap",
        503: "SERVICE UNAVAILABLE: the store or the limits are unreachable, or sandbox faults",
        504: "GATEWAY TIMEOUT: the consumption exceeded the time limit (L7)",
    }
    return {str(status): _error(described[status]) for status in statuses}


ADMIN_ERRORS = (400, 401, 403, 404, 405, 409, 413, 503, 504)


def openapi_document(settings: Settings) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "rp_name": NAME_INPUT,
        "ivr_active": FLAG_INPUT,
        "chat_active": FLAG_INPUT,
        "interaction_active": FLAG_INPUT,
        "crm_active": FLAG_INPUT,
        "last_use": {
            # null, like "", is a routing point never used.
            "type": ["string", "null"],
            "pattern": LAST_USE_PATTERN,
            "example": "2026-11-20 14:03:11",
        },
    }
    point_input = {
        "type": "object",
        "additionalProperties": False,
        "required": ["rp_id", "rp_name"],
        "properties": {"rp_id": ID_INPUT, **fields},
        "example": RECORD_EXAMPLE,
    }
    changes = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": fields,
        "example": {"ivr_active": "no"},
    }
    cap = settings.max_records_per_upload
    admin_security: list[dict[str, list[str]]] = [{"wolkvoxToken": []}]
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "routing-points",
            "version": __version__,
            "description": "The Wolkvox API v2 routing_points endpoint, wire-compatible, with "
            "every consumption limit enforced, and an admin API for its data.",
        },
        "security": [{"wolkvoxToken": []}],
        "paths": {
            contract.ENDPOINT: {
                "get": {
                    "operationId": "information",
                    "summary": "routing_points (every routing point) or token_info",
                    "description": "Each call is one consumption (L9), except a 304.",
                    "parameters": [
                        {
                            "name": "api",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "enum": list(contract.REPORTS)},
                            "example": "routing_points",
                        },
                        {
                            "name": "routing",
                            "in": "query",
                            "required": False,
                            "schema": ID_PARAMETER,
                            "description": "Only this rp_id.",
                            "example": 101,
                        },
                        {
                            "name": "after",
                            "in": "query",
                            "required": False,
                            "schema": ID_PARAMETER,
                            "description": "Continue after this rp_id (L3 continuation).",
                        },
                        {
                            "name": "If-None-Match",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "An ETag: 304 at no cost while nothing changed.",
                        },
                        *TOKEN_HEADERS,
                    ],
                    "responses": {
                        "200": _json(
                            {"anyOf": [_ref("RoutingPointsAnswer"), _ref("TokenInfoAnswer")]},
                            "The routing points, ordered by rp_id, or the token's counters.",
                        ),
                        "304": {"description": "Not modified since the ETag: costs nothing."},
                        **_errors(settings, 400, 401, 403, 404, 503, 504),
                    },
                }
            },
            "/api/v2/admin/routing_points": {
                "post": {
                    "operationId": "createRoutingPoint",
                    "summary": "Create one routing point",
                    "security": admin_security,
                    "parameters": TOKEN_HEADERS,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("RoutingPointInput")}},
                    },
                    "responses": {
                        "201": _json(_ref("RoutingPointsAnswer"), "Created."),
                        **_errors(settings, *ADMIN_ERRORS),
                    },
                }
            },
            "/api/v2/admin/routing_points/{rp_id}": {
                "parameters": [
                    {
                        "name": "rp_id",
                        "in": "path",
                        "required": True,
                        "schema": ID_PARAMETER,
                        "example": 101,
                    },
                    *TOKEN_HEADERS,
                ],
                "patch": {
                    "operationId": "updateRoutingPoint",
                    "summary": "Change fields of one routing point",
                    "security": admin_security,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("RoutingPointChanges")}},
                    },
                    "responses": {
                        "200": _json(_ref("RoutingPointsAnswer"), "Updated."),
                        **_errors(settings, *ADMIN_ERRORS),
                    },
                },
                "delete": {
                    "operationId": "deleteRoutingPoint",
                    "summary": "Delete one routing point",
                    "security": admin_security,
                    "responses": {
                        "200": _json(_envelope({"type": "null"}), "Deleted."),
                        **_errors(settings, *ADMIN_ERRORS),
                    },
                },
            },
            "/api/v2/admin/routing_points/bulk": {
                "post": {
                    "operationId": "bulkUpsertRoutingPoints",
                    "summary": f"Upsert up to {cap} routing points in one transaction (L4)",
                    "security": admin_security,
                    "parameters": [
                        {
                            "name": "replace",
                            "in": "query",
                            "required": False,
                            "schema": REPLACE_FLAG,
                            "description": "Delete the points that are not in the upload.",
                        },
                        *TOKEN_HEADERS,
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "maxItems": cap,
                                    "items": _ref("RoutingPointUpsert"),
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            _envelope(
                                {
                                    "type": "object",
                                    "required": ["upserted", "deleted", "unchanged"],
                                    "properties": {
                                        "upserted": {
                                            "type": "integer",
                                            "description": "records accepted, unchanged too",
                                        },
                                        "deleted": {"type": "integer"},
                                        "unchanged": {
                                            "type": "integer",
                                            "description": "of the upserted, those already "
                                            "as stored: not written",
                                        },
                                    },
                                }
                            ),
                            "Applied whole.",
                        ),
                        **_errors(settings, *ADMIN_ERRORS),
                    },
                }
            },
            "/api/v2/admin/usage_events": {
                "post": {
                    "operationId": "recordUsageEvents",
                    "summary": f"Append up to {cap} usage events; last_use only moves forward",
                    "security": admin_security,
                    "parameters": TOKEN_HEADERS,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "maxItems": cap,
                                    "items": _ref("UsageEvent"),
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            _envelope(
                                {
                                    "type": "object",
                                    "required": ["recorded", "unknown_rp_ids", "last_use_advanced"],
                                    "properties": {
                                        "recorded": {"type": "integer"},
                                        "unknown_rp_ids": {"type": "array", "items": DIGITS},
                                        "last_use_advanced": {"type": "integer"},
                                    },
                                }
                            ),
                            "Recorded; unknown rp_ids are listed, not stored.",
                        ),
                        **_errors(settings, *ADMIN_ERRORS),
                    },
                }
            },
            "/api/v2/admin/usage_report": {
                "get": {
                    "operationId": "usageReport",
                    "summary": "Events per local day, routing point and channel "
                    f"(L5: {settings.max_date_range_days} days)",
                    "security": admin_security,
                    "parameters": [
                        {
                            "name": "date_ini",
                            "in": "query",
                            "required": True,
                            "schema": REPORT_TIME,
                            "example": "20261101000000",
                        },
                        {
                            "name": "date_end",
                            "in": "query",
                            "required": True,
                            "schema": REPORT_TIME,
                            "example": "20261130235959",
                        },
                        {
                            "name": "routing",
                            "in": "query",
                            "required": False,
                            "schema": ID_PARAMETER,
                        },
                        *TOKEN_HEADERS,
                    ],
                    "responses": {
                        "200": _json(
                            _envelope({"type": "array", "items": _ref("UsageCount")}), "The counts."
                        ),
                        **_errors(settings, *ADMIN_ERRORS),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "liveness",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Alive.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readiness",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Store and limits reachable.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "503": {
                            "description": "Not ready.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "wolkvoxToken": {"type": "apiKey", "in": "header", "name": "wolkvox-token"},
            },
            "headers": {
                "X-Request-ID": {"schema": {"type": "string"}},
                "X-Poll-Interval": {
                    "schema": {"type": "string"},
                    "example": "300",
                    "description": "L2: seconds between consumptions.",
                },
                "RateLimit": {"schema": {"type": "string"}, "example": '"daily";r=998;t=80191'},
                "RateLimit-Policy": {
                    "schema": {"type": "string"},
                    "example": '"daily";q=1000;w=86400',
                },
                "Retry-After": {"schema": {"type": "string"}, "example": "1"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["code", "error", "msg", "data"],
                    "properties": {
                        "code": {"type": "integer"},
                        "error": {"type": "string"},
                        "msg": {"type": "string"},
                        "data": {"type": "null"},
                    },
                    "example": {
                        "code": 403,
                        "error": "FORBIDDEN",
                        "msg": contract.MSG_TOKEN_LIMIT_EXCEEDED,
                        "data": None,
                    },
                },
                "RoutingPoint": {
                    "type": "object",
                    "required": list(RECORD_EXAMPLE),
                    "properties": {
                        "rp_id": DIGITS,
                        "rp_name": {"type": "string"},
                        "ivr_active": YES_NO,
                        "chat_active": YES_NO,
                        "interaction_active": YES_NO,
                        "crm_active": YES_NO,
                        "last_use": {
                            "type": "string",
                            "pattern": f"^$|^{ANY_LOCAL_TIME}$",
                        },
                    },
                    "example": RECORD_EXAMPLE,
                },
                "RoutingPointsAnswer": _envelope(
                    {"type": "array", "items": _ref("RoutingPoint")},
                    {
                        "code": 200,
                        "error": None,
                        "msg": contract.records_found(1),
                        "data": [RECORD_EXAMPLE],
                    },
                ),
                "TokenInfo": {
                    "type": "object",
                    "required": [
                        "description",
                        "token_limit",
                        "token_use_today",
                        "all_token_today",
                        "available_consumption_options",
                    ],
                    "properties": {
                        "description": {"type": "string"},
                        "token_limit": DIGITS,
                        "token_use_today": DIGITS,
                        "all_token_today": DIGITS,
                        "available_consumption_options": DIGITS,
                    },
                },
                "TokenInfoAnswer": _envelope({"type": "array", "items": _ref("TokenInfo")}),
                "RoutingPointInput": point_input,
                # An upsert may leave out any field of a point that exists, rp_name too.
                "RoutingPointUpsert": {**point_input, "required": ["rp_id"]},
                "RoutingPointChanges": changes,
                "UsageEvent": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["rp_id", "channel", "at"],
                    "properties": {
                        "rp_id": ID_INPUT,
                        "channel": {
                            "type": "string",
                            "enum": ["ivr", "chat", "interaction", "crm"],
                        },
                        "at": EVENT_TIME,
                    },
                    "example": {"rp_id": "101", "channel": "ivr", "at": "2026-11-20 14:03:11"},
                },
                "UsageCount": {
                    "type": "object",
                    "required": ["day", "rp_id", "channel", "events"],
                    "properties": {
                        "day": {"type": "string"},
                        "rp_id": DIGITS,
                        "channel": {"type": "string"},
                        "events": DIGITS,
                    },
                },
            },
        },
    }
    document["paths"].update(
        access_paths(admin_security, TOKEN_HEADERS, _errors(settings, *ADMIN_ERRORS))
    )
    return document

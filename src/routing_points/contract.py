"""The wire contract (API.md) in one place: what the server speaks and the SDK expects.

The endpoint, the report names, a record's fields in wire order, the vendor's messages
and the limits' default values are facts of the vendor's API, not choices of this code;
the server, the SDK, the settings and the OpenAPI document read them from here so that
they cannot drift apart. Nothing here imports from the rest of the package.
"""

from __future__ import annotations

from typing import Final

# Section 2: the one endpoint, and the reports `api=` selects.
ENDPOINT: Final = "/api/v2/information.php"
ROUTING_POINTS: Final = "routing_points"
TOKEN_INFO: Final = "token_info"  # noqa: S105 (a report name, not a secret)
REPORTS: Final = (ROUTING_POINTS, TOKEN_INFO)

# Section 3: a routing point's fields, in the order the vendor sends them.
FLAG_FIELDS: Final = ("ivr_active", "chat_active", "interaction_active", "crm_active")
FIELDS: Final = ("rp_id", "rp_name", *FLAG_FIELDS, "last_use")
# Section 5: token_info's one record, in order.
TOKEN_INFO_FIELDS: Final = (
    "description",
    "token_limit",
    "token_use_today",
    "all_token_today",
    "available_consumption_options",
)

# Section 3's example records, as API.md shows them.
EXAMPLE_RECORDS: Final = (
    {
        "rp_id": "101",
        "rp_name": "Sales line",
        "ivr_active": "yes",
        "chat_active": "no",
        "interaction_active": "yes",
        "crm_active": "no",
        "last_use": "2026-11-20 14:03:11",
    },
    {
        "rp_id": "102",
        "rp_name": "Support chat",
        "ivr_active": "no",
        "chat_active": "yes",
        "interaction_active": "yes",
        "crm_active": "yes",
        "last_use": "",
    },
)
EXAMPLE_RECORD: Final = EXAMPLE_RECORDS[0]


def records_found(count: int) -> str:
    """A success's `msg` (section 3): "<n> records were found"."""
    return f"{count} records were found"


# Section 4: the vendor's messages, exactly (S105: messages about tokens, not secrets).
MSG_UNKNOWN_API: Final = "THE API YOU WANT TO CONSULT DOES NOT EXIST"
MSG_INVALID_PARAMETERS: Final = "SOME PARAMETERS ARE REQUIRED"
MSG_MISSING_TOKEN: Final = "PLEASE ENTER THE WOLKVOX-TOKEN"  # noqa: S105
MSG_INVALID_TOKEN: Final = "PLEASE VALIDATE TOKEN"  # noqa: S105
MSG_TOKEN_LIMIT_EXCEEDED: Final = "TOKEN LIMIT EXCEEDED"  # noqa: S105
# Followed by the limit in parentheses: "... PER TOKEN (2)".
MSG_TOO_MANY_SIMULTANEOUS: Final = "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN"


def too_many_simultaneous(limit: int) -> str:
    return f"{MSG_TOO_MANY_SIMULTANEOUS} ({limit})"


# Section 4's undocumented errors, in the vendor's style (plain upper case).
MSG_BAD_REQUEST: Final = "BAD REQUEST"
MSG_FORBIDDEN: Final = "FORBIDDEN"
MSG_INSUFFICIENT_SCOPE: Final = "THIS TOKEN IS NOT ALLOWED TO USE THE ADMIN API"
MSG_NOT_FOUND: Final = "THE RESOURCE YOU ARE LOOKING FOR DOES NOT EXIST"
MSG_METHOD_NOT_ALLOWED: Final = "METHOD NOT ALLOWED"
MSG_CONFLICT: Final = "CONFLICT"
MSG_UPLOAD_TOO_LARGE: Final = "THE UPLOAD IS TOO LARGE"
MSG_INTERNAL_ERROR: Final = "INTERNAL SERVER ERROR"
MSG_SERVICE_UNAVAILABLE: Final = "SERVICE UNAVAILABLE"
MSG_STORE_UNAVAILABLE: Final = "THE STORE IS UNAVAILABLE"


def result_too_large(limit: str) -> str:
    """L6; `limit` is already written out ("256 MB")."""
    return f"THE RESULT EXCEEDS THE SIZE LIMIT OF {limit}"


def poll_too_soon(interval_s: float) -> str:
    """L2, when the server enforces a minimum interval."""
    return f"THE MINIMUM INTERVAL BETWEEN CONSUMPTIONS ({interval_s:g} SECONDS) HAS NOT ELAPSED"


def consumption_timeout(limit_s: float) -> str:
    """L7."""
    return f"THE CONSUMPTION EXCEEDED THE TIME LIMIT OF {limit_s:g} SECONDS"


# Section 6: the limits' values as the vendor states them (the settings' defaults).
POLL_INTERVAL_S: Final = 300  # L2: one consumption every 5 minutes (advice)
MAX_RECORDS_PER_RESPONSE: Final = 60_000  # L3
MAX_RECORDS_PER_UPLOAD: Final = 10_000  # L4
MAX_DATE_RANGE_DAYS: Final = 31  # L5
MAX_RESPONSE_BYTES: Final = 256 * 1024 * 1024  # L6: 256 MB
CONSUMPTION_TIMEOUT_S: Final = 60.0  # L7
MAX_IN_FLIGHT_PER_TOKEN: Final = 2  # L8
DAILY_CALLS_PER_LICENSE: Final = 1000  # L9: licenses x 1,000

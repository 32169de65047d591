"""The wire contract's values as API.md writes them: the tests' one copy.

Literal on purpose, not read from `routing_points.contract`: tests that pin the wire
compare the server's output with these, so a wrong edit to contract.py changes what the
server sends and fails the suite instead of changing the expectation with it.
`test_contract.py` checks once that contract.py still says the same.
"""

from __future__ import annotations

from typing import Any

ENDPOINT = "/api/v2/information.php"
# Section 3: the record's fields, in the vendor's order.
FIELDS = [
    "rp_id",
    "rp_name",
    "ivr_active",
    "chat_active",
    "interaction_active",
    "crm_active",
    "last_use",
]
# Section 3's two example records.
SALES_LINE: dict[str, Any] = {
    "rp_id": "101",
    "rp_name": "Sales line",
    "ivr_active": "yes",
    "chat_active": "no",
    "interaction_active": "yes",
    "crm_active": "no",
    "last_use": "2026-11-20 14:03:11",
}
SUPPORT_CHAT: dict[str, Any] = {
    "rp_id": "102",
    "rp_name": "Support chat",
    "ivr_active": "no",
    "chat_active": "yes",
    "interaction_active": "yes",
    "crm_active": "yes",
    "last_use": "",
}
EXAMPLE_RECORDS = [SALES_LINE, SUPPORT_CHAT]

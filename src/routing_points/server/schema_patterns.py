"""Regular expressions that let the OpenAPI document say what the server accepts.

A plain `^[0-9]+$` or `[0-9]{2}` lets schema-driven clients and fuzzers send ids above
2^63-1 and impossible dates, which the server refuses: the schema has to say so too.
"""

from __future__ import annotations

from routing_points.store.records import MAX_EPOCH, MAX_RP_ID, MIN_EPOCH


def at_most(limit: int, *, minimum_one: bool = True) -> str:
    """A regex (no anchors) for the decimal integers 1..limit (0..limit when not
    minimum_one) without leading zeros; limit >= 10."""
    digits = str(limit)
    length = len(digits)
    branches = ["[1-9]" if minimum_one else "[0-9]"]
    if length > 2:
        branches.append(f"[1-9][0-9]{{1,{length - 2}}}")  # 2 to length-1 digits
    for index, digit in enumerate(digits):  # length digits, below limit from `index` on
        low, high = (1 if index == 0 else 0), int(digit) - 1
        if high >= low:
            rest = length - index - 1
            branches.append(
                f"{digits[:index]}[{low}-{high}]" + (f"[0-9]{{{rest}}}" if rest else "")
            )
    branches.append(digits)
    return "(?:" + "|".join(branches) + ")"


ID = at_most(MAX_RP_ID)
NON_NEGATIVE_ID = at_most(MAX_RP_ID, minimum_one=False)

# Years the store takes (1970-9998), and the leap years among them.
# (to 9997: 9998-12-31 local is past the store's last instant in zones west of UTC)
_YEAR = "(?:19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-7])"
_LEAP = (
    "(?:19(?:7[26]|8[048]|9[26])|[2-9][0-9](?:0[48]|[2468][048]|[13579][26])"
    "|(?:[2468][048]|[3579][26])00)"
)
_TIME = "(?:[01][0-9]|2[0-3]){sep}[0-5][0-9]{sep}[0-5][0-9]"


def calendar(
    date_sep: str, middle: str, time_sep: str, year: str = _YEAR, leap: str = _LEAP
) -> str:
    """A regex (no anchors) for real calendar dates and times (by default 1970-9997)."""
    month_day = (
        f"(?:(?:0[13578]|1[02]){date_sep}(?:0[1-9]|[12][0-9]|3[01])"
        f"|(?:0[469]|11){date_sep}(?:0[1-9]|[12][0-9]|30)"
        f"|02{date_sep}(?:0[1-9]|1[0-9]|2[0-8]))"
    )
    day = f"(?:{year}{date_sep}{month_day}|{leap}{date_sep}02{date_sep}29)"
    return day + middle + _TIME.format(sep=time_sep)


# The contract's "YYYY-MM-DD HH:MM:SS", and the report's "YYYYmmddHHiiss".
LOCAL_TIME = calendar("-", " ", ":")
COMPACT_TIME = calendar("", "", "")
# What the server writes: any stored instant in the operation's zone (1969 to 9998 too).
ANY_LOCAL_TIME = calendar(
    "-",
    " ",
    ":",
    "[0-9]{4}",
    "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)",
)


# Schema pieces built from them.
# An rp_id the server takes: 1 to 2^63-1, as a string or a number.
ID_INPUT = {
    "oneOf": [
        {"type": "string", "pattern": f"^{ID}$"},
        {"type": "integer", "minimum": 1, "maximum": MAX_RP_ID},
    ]
}
ID_PARAMETER = {"type": "integer", "minimum": 0, "maximum": MAX_RP_ID}
REPORT_TIME = {"type": "string", "pattern": f"^{COMPACT_TIME}$"}
EVENT_TIME = {
    "anyOf": [
        {"type": "string", "pattern": f"^{LOCAL_TIME}$"},
        {"type": "string", "format": "date-time", "pattern": f"^{_YEAR}-"},
        {"type": "integer", "minimum": MIN_EPOCH, "maximum": MAX_EPOCH},
    ],
    "description": "The operation's local 'YYYY-MM-DD HH:MM:SS', ISO 8601 with an offset, "
    "or epoch seconds.",
}
# Python's str.strip() whitespace, which the server trims before checking.
_SPACE = "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# 1 to 255 characters, not all whitespace, no NUL.
NAME_INPUT = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": f"^[^\x00]*[^\x00{_SPACE}][^\x00]*$",
}
# yes / no in any case, around whitespace, or a JSON boolean.
FLAG_INPUT = {
    "anyOf": [
        {"type": "boolean"},
        {"type": "string", "pattern": f"^[{_SPACE}]*(?:[Yy][Ee][Ss]|[Nn][Oo])[{_SPACE}]*$"},
    ]
}
REPLACE_FLAG = {"type": "string", "pattern": "^(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)$"}

TOKEN_HEADERS = [
    {
        "name": "wolkvox_server",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "example": "0032",
        "description": "The operation; if given it must be the token's (also wolkvox-server).",
    },
]

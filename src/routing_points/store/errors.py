"""The store's refusals: administrative requests it will not carry out, for a person to read.

    StoreError
    ├── NotFound      the operation, token or routing point does not exist
    ├── Conflict      it exists already
    ├── Invalid       a value cannot be stored (wraps records.InvalidValue)
    └── StoreInUse    another server already serves this SQLite file (store.factory)

The CLI prints them as one line, the admin API answers them 404 / 409 / 400.
"""

from __future__ import annotations


class StoreError(Exception):
    """An administrative request the store refuses, with a message for a person."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


class Invalid(StoreError):
    pass


class StoreInUse(StoreError):
    """The embedded store serves from one process, and another one has it."""

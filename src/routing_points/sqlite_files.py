"""A SQLite database's files, removed together: used where a command made a store for work
that then failed (nothing half-written is left behind)."""

from __future__ import annotations

from pathlib import Path


def remove_sqlite_files(path: Path) -> None:
    """A SQLite file and its WAL, shared-memory and charge-ledger files: a WAL left beside
    a new file of the same name would be replayed into it."""
    for suffix in ("", "-wal", "-shm", "-charges"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)

"""The store the settings name: chosen, opened, migrated, and held by one process if embedded.

    sqlite:///...      SqliteReader   one process serves the file: its limits live in it
    postgresql://...   PostgresReader an asyncpg pool, any number of processes

Whatever starts the app (`routing-points serve`, `uvicorn --factory`, a test) opens the
store here, so the one-process rule of SQLite holds for all of them: the server holds a
lock on `<file>.lock` for as long as it runs, and a second one on the file is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from sqlalchemy import Engine

from routing_points.settings import Settings
from routing_points.store import migrate
from routing_points.store.engine import create_sync_engine
from routing_points.store.errors import StoreInUse

# PostgreSQL's half of the one-process rule: a server that keeps its limits in its own
# memory (no Redis) holds this session advisory lock (store/postgres.py), and the CLI checks
# it before starting one (cli/common.py).
LOCAL_LIMITS_LOCK = "hashtext('routing-points:local-limits')"
# (take, give back) of that lock, by whether it is held shared (servers with Redis).
LIMITS_LOCK_FUNCTIONS = {
    False: ("pg_try_advisory_lock", "pg_advisory_unlock"),
    True: ("pg_try_advisory_lock_shared", "pg_advisory_unlock_shared"),
}
# Why a server was refused the lock, by whether it wanted it shared (it has Redis).
LIMITS_LOCK_REFUSED = {
    False: "another server keeps its limits in {where}: give every server "
    "the same --redis to run several",
    True: "a server without --redis keeps its limits in {where}: stop it, or give "
    "it the same --redis as this one",
}

if TYPE_CHECKING:  # imported when opened: the CLI's lock check needs neither driver
    from routing_points.store.postgres import PostgresReader
    from routing_points.store.sqlite import SqliteReader


class SoleProcess:
    """The lock that makes this process the only server of a SQLite file, whatever name
    reaches it: a lock file beside its real path (symlinks resolved), and a lock on the
    file itself, which its hard links share."""

    def __init__(self, sqlite_path: Path) -> None:
        self.sqlite_path = sqlite_path
        real = sqlite_path.resolve()
        self.path = real.with_name(real.name + ".lock")
        self._files: list[IO[bytes]] = []

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock(self.path, "ab")
            if self.sqlite_path.exists():
                # flock, not SQLite's fcntl locks: the two never meet. Closed only once
                # SQLite's connections are (closing a file drops this process's fcntl locks).
                self._lock(self.sqlite_path, "rb")
        except BaseException:
            self.release()
            raise

    def probe(self) -> None:
        """Raise StoreInUse if a server holds the file now, creating nothing (no lock
        file, no folder): what may be checked before the file is even opened."""
        try:
            for path in (self.path, self.sqlite_path):
                if path.exists():
                    self._lock(path, "rb")
        finally:
            self.release()

    def _lock(self, path: Path, mode: str) -> None:
        file = path.open(mode)
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise StoreInUse(
                f"another server is already using {self.sqlite_path}: the embedded store "
                "serves from one process (use PostgreSQL and Redis to scale out)"
            ) from None
        self._files.append(file)

    def release(self) -> None:
        while self._files:
            self._files.pop().close()  # closing a file releases its lock


@contextlib.contextmanager
def sole_process(settings: Settings) -> Iterator[None]:
    """Hold the SQLite file for this process meanwhile (nothing to hold for PostgreSQL)."""
    if not settings.is_sqlite:
        yield
        return
    lock = SoleProcess(settings.sqlite_path)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


@dataclass
class Store:
    engine: Engine  # synchronous: migrations, admin writes, the refusal log
    reader: SqliteReader | PostgresReader  # the hot path's
    lock: SoleProcess | None

    async def close(self) -> None:
        try:
            await self.reader.close()
        finally:
            self.engine.dispose()
            if self.lock is not None:
                self.lock.release()


async def open_store(settings: Settings) -> Store:
    """The settings' store, migrated; with SQLite, this process's alone until `close`."""
    from routing_points.store.postgres import PostgresReader
    from routing_points.store.sqlite import SqliteReader

    lock = None
    if settings.is_sqlite:
        lock = SoleProcess(settings.sqlite_path)
        lock.acquire()  # before migrating: a second server never touches the schema
    engine = None
    try:
        engine = create_sync_engine(settings.database_url)
        migrate.upgrade(engine)
        reader: SqliteReader | PostgresReader
        if settings.is_sqlite:
            reader = SqliteReader(settings.sqlite_path)
        else:
            reader = await PostgresReader.connect(
                settings.database_url,
                min_size=1,
                max_size=settings.database_pool_size,
                timeout_s=settings.database_timeout_s,
            )
    except BaseException:
        if engine is not None:
            engine.dispose()
        if lock is not None:
            lock.release()
        raise
    return Store(engine, reader, lock)

"""What the CLI's commands share: the database option and the store's errors as one line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import click
from sqlalchemy import Engine

from routing_points.settings import Settings
from routing_points.store import migrate
from routing_points.store.admin import StoreError
from routing_points.store.engine import create_sync_engine

P = ParamSpec("P")
R = TypeVar("R")

database_option = click.option(
    "--database",
    "database_url",
    metavar="URL",
    default=None,
    help="Database URL (default: ROUTING_POINTS_DATABASE_URL, else sqlite:///routing-points.db).",
)


def settings_for(database_url: str | None, **overrides: Any) -> Settings:
    try:
        if database_url is not None:
            overrides["database_url"] = database_url
        return Settings(**overrides)
    except ValueError as exc:
        raise click.ClickException(_first_line(exc)) from None


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def open_store(database_url: str | None) -> Engine:
    """The store, migrated to the current schema."""
    settings = settings_for(database_url)
    if settings.is_sqlite:
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_sync_engine(settings.database_url)
    migrate.upgrade(engine)
    return engine


def store_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a refused store request into one line on stderr and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper

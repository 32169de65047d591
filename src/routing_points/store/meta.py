"""Facts about the store itself, as keys and values (the demo's marker)."""

from __future__ import annotations

from sqlalchemy import Engine, select

from routing_points.store.engine import dialect_insert
from routing_points.store.schema import meta


def get_meta(engine: Engine, key: str) -> str | None:
    with engine.connect() as conn:
        value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one_or_none()
    return None if value is None else str(value)


def set_meta(engine: Engine, key: str, value: str) -> None:
    with engine.begin() as conn:
        statement = dialect_insert(conn)(meta).values(key=key, value=value)
        conn.execute(
            statement.on_conflict_do_update(index_elements=[meta.c.key], set_={"value": value})
        )

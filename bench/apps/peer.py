"""The peer: the endpoint as most people would write it, for comparison.

FastAPI, SQLAlchemy's async ORM on aiosqlite, a session per request, a token lookup per
request, and a pydantic `response_model`; no limits. BENCH_DATABASE names the same SQLite
file our server reads.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(f"sqlite+aiosqlite:///{os.environ['BENCH_DATABASE']}")
Session = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Operation(Base):
    __tablename__ = "operations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    timezone: Mapped[str] = mapped_column(String)


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operation_id: Mapped[int] = mapped_column(ForeignKey("operations.id"))
    secret_hash: Mapped[str] = mapped_column(String)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Point(Base):
    __tablename__ = "routing_points"
    operation_id: Mapped[int] = mapped_column(ForeignKey("operations.id"), primary_key=True)
    rp_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    rp_name: Mapped[str] = mapped_column(String)
    ivr_active: Mapped[bool] = mapped_column(Boolean)
    chat_active: Mapped[bool] = mapped_column(Boolean)
    interaction_active: Mapped[bool] = mapped_column(Boolean)
    crm_active: Mapped[bool] = mapped_column(Boolean)
    last_use_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class RoutingPointOut(BaseModel):
    rp_id: str
    rp_name: str
    ivr_active: str
    chat_active: str
    interaction_active: str
    crm_active: str
    last_use: str


class Answer(BaseModel):
    code: int
    error: str | None
    msg: str
    data: list[RoutingPointOut]


app = FastAPI()


async def session() -> AsyncIterator[AsyncSession]:
    async with Session() as db:
        yield db


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


@app.get("/api/v2/information.php", response_model=Answer)
async def information(
    api: str, wolkvox_token: str = Header(), db: AsyncSession = Depends(session)
) -> Answer:
    digest = hashlib.sha256(wolkvox_token.encode()).hexdigest()
    token = (
        await db.execute(
            select(Token).where(Token.secret_hash == digest, Token.revoked_at.is_(None))
        )
    ).scalar_one_or_none()
    if token is None:
        raise HTTPException(403, "PLEASE VALIDATE TOKEN")
    operation = await db.get(Operation, token.operation_id)
    assert operation is not None
    zone = ZoneInfo(operation.timezone)
    points = (
        await db.execute(
            select(Point).where(Point.operation_id == token.operation_id).order_by(Point.rp_id)
        )
    ).scalars()
    data = [
        RoutingPointOut(
            rp_id=str(p.rp_id),
            rp_name=p.rp_name,
            ivr_active=yes_no(p.ivr_active),
            chat_active=yes_no(p.chat_active),
            interaction_active=yes_no(p.interaction_active),
            crm_active=yes_no(p.crm_active),
            last_use=""
            if p.last_use_at is None
            else datetime.fromtimestamp(p.last_use_at, UTC)
            .astimezone(zone)
            .strftime("%Y-%m-%d %H:%M:%S"),
        )
        for p in points
    ]
    return Answer(code=200, error=None, msg=f"{len(data)} records were found", data=data)

"""The baselines for ``make bench``: bare FastAPI, served by the same gunicorn command,
gunicorn.conf.py and worker class as the service (``gunicorn -c service/gunicorn.conf.py
bench.bare_app:app``), so a ratio measures what the service's own layers cost.

- ``/health``: the service's own handler (a pre-rendered body) and nothing else, so
  serialization is not part of the difference.
- The item routes, when ``DATABASE_URL`` is set: what a plain FastAPI + SQLAlchemy 2 (sync) +
  psycopg 3 app would write for the same table: ``def`` routes (FastAPI runs them in its thread
  pool), a Session per request, a pool of 10 + 0, response models. None of the service's
  guarantees: no deadline, no 503 on an outage, no error body, request ID, metrics or cache.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import DateTime, String, Text, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from starlette.responses import Response

app = FastAPI()

_OK = b'{"status":"ok"}'


@app.get("/health")
async def health() -> Response:
    return Response(_OK, media_type="application/json")


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ItemIn(BaseModel):
    name: str
    description: str | None = None


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime


class Page(BaseModel):
    items: list[ItemOut]
    total: int
    offset: int
    limit: int


def _sessions() -> sessionmaker[Session] | None:
    url = os.environ.get("DATABASE_URL")
    if not url:
        return None
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    return sessionmaker(create_engine(url, pool_size=10, max_overflow=0))


SessionLocal = _sessions()


if SessionLocal is not None:
    sessions = SessionLocal

    @app.get("/api/v1/items/{item_id}", response_model=ItemOut)
    def get_item(item_id: int) -> Any:
        with sessions() as session:
            item = session.get(Item, item_id)
            if item is None:
                raise HTTPException(404)
            return item

    @app.get("/api/v1/items", response_model=Page)
    def list_items(
        offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=100)] = 20
    ) -> Any:
        with sessions() as session:
            total = session.scalar(select(func.count()).select_from(Item)) or 0
            rows = session.scalars(select(Item).order_by(Item.id).offset(offset).limit(limit))
            return {"items": list(rows), "total": total, "offset": offset, "limit": limit}

    @app.post("/api/v1/items", response_model=ItemOut, status_code=201)
    def create_item(data: ItemIn) -> Any:
        with sessions.begin() as session:
            item = Item(name=data.name, description=data.description)
            session.add(item)
            session.flush()
            session.refresh(item)
            return ItemOut.model_validate(item)

"""Item queries. Each function takes the Session of one unit of work (see Database.run)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from heliox.models import Item
from heliox.schemas.item import ItemCreate, ItemPage, ItemRead, ItemUpdate


def create(session: Session, data: ItemCreate) -> ItemRead:
    item = Item(name=data.name, description=data.description)
    session.add(item)
    session.flush()
    return ItemRead.model_validate(item)


def get(session: Session, item_id: int) -> ItemRead | None:
    item = session.get(Item, item_id)
    return None if item is None else ItemRead.model_validate(item)


def page(session: Session, offset: int, limit: int) -> ItemPage:
    total = session.scalar(select(func.count()).select_from(Item)) or 0
    rows = session.scalars(select(Item).order_by(Item.id).offset(offset).limit(limit))
    return ItemPage(
        items=[ItemRead.model_validate(row) for row in rows],
        total=total,
        offset=offset,
        limit=limit,
    )


def update(session: Session, item_id: int, data: ItemUpdate) -> ItemRead | None:
    item = session.get(Item, item_id, with_for_update=True)
    if item is None:
        return None
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(item, field, value)
    session.flush()
    return ItemRead.model_validate(item)


def delete(session: Session, item_id: int) -> bool:
    item = session.get(Item, item_id)
    if item is None:
        return False
    session.delete(item)
    return True

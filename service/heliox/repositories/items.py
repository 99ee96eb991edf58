"""Item queries. Writes take the Session of one unit of work (``Database.run``); reads take
the autocommit Connection of ``Database.read`` and run Core statements built once, here: in
process, building a statement per call cost as much as the rest of a read by primary key."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.orm import Session

from heliox.models import Item
from heliox.schemas.item import ItemCreate, ItemPage, ItemRead, ItemUpdate

_items = Item.__table__
_BY_ID = select(_items).where(_items.c.id == bindparam("id"))
_COUNT = select(func.count()).select_from(_items)
_PAGE = select(_items).order_by(_items.c.id).offset(bindparam("offset")).limit(bindparam("limit"))


def create(session: Session, data: ItemCreate) -> ItemRead:
    item = Item(name=data.name, description=data.description)
    session.add(item)
    session.flush()
    return ItemRead.model_validate(item)


def get(connection: Connection, item_id: int) -> ItemRead | None:
    row = connection.execute(_BY_ID, {"id": item_id}).first()
    return None if row is None else ItemRead.model_validate(row)


def page(connection: Connection, offset: int, limit: int) -> ItemPage:
    total = connection.scalar(_COUNT) or 0
    rows = connection.execute(_PAGE, {"offset": offset, "limit": limit})
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

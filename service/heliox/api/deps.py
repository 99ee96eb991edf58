"""FastAPI dependencies: the database (unit-of-work runner), its readiness check, and the
services made of the database and the cache.

What a route depends on is also what the OpenAPI document reads to list its error answers
(api/answers.py): a route that takes the database, or a service that uses it, can answer 503
when it is down. A route takes one service rather than the database and the cache apart:
FastAPI solves each dependency at a cost of about 17 us a request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from heliox.core.db import Database
from heliox.core.health import DbHealth
from heliox.core.resources import Resources
from heliox.services.items import ItemService


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


# The dependencies are `async def`: FastAPI runs a plain `def` dependency in the thread pool, a
# hand-off per dependency per request for what is an attribute lookup.
async def get_database(request: Request) -> Database:
    """The session dependency: ``await db.run(fn)`` runs ``fn(session)`` in one transaction."""
    return get_resources(request).db


async def get_db_health(request: Request) -> DbHealth:
    return get_resources(request).health


async def get_items(request: Request) -> ItemService:
    resources = get_resources(request)
    return ItemService(resources.db, resources.cache)


# Dependencies made of the database: the rules of api/answers.py for it apply to them too.
USES_DATABASE = (get_database, get_items)

DB = Annotated[Database, Depends(get_database)]
DbHealthDep = Annotated[DbHealth, Depends(get_db_health)]
ItemsDep = Annotated[ItemService, Depends(get_items)]

"""FastAPI dependencies: the database (unit-of-work runner), its readiness check, the cache.

What a route depends on is also what the OpenAPI document reads to list its error answers
(api/answers.py): a route that takes the database can answer 503 when it is down.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from heliox.core.cache import Cache
from heliox.core.db import Database
from heliox.core.health import DbHealth
from heliox.core.resources import Resources


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


async def get_cache(request: Request) -> Cache:
    return get_resources(request).cache


DB = Annotated[Database, Depends(get_database)]
DbHealthDep = Annotated[DbHealth, Depends(get_db_health)]
CacheDep = Annotated[Cache, Depends(get_cache)]

"""FastAPI dependencies: the database (unit-of-work runner) and the cache."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from heliox.core.cache import Cache
from heliox.core.db import Database
from heliox.core.resources import Resources


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


# The dependencies are `async def`: FastAPI runs a plain `def` dependency in the thread pool, a
# hand-off per dependency per request for what is an attribute lookup.
async def get_database(request: Request) -> Database:
    """The session dependency: ``await db.run(fn)`` runs ``fn(session)`` in one transaction."""
    return get_resources(request).db


async def get_cache(request: Request) -> Cache:
    return get_resources(request).cache


DB = Annotated[Database, Depends(get_database)]
CacheDep = Annotated[Cache, Depends(get_cache)]

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


def get_database(request: Request) -> Database:
    """The session dependency: ``await db.run(fn)`` runs ``fn(session)`` in one transaction."""
    return get_resources(request).db


def get_cache(request: Request) -> Cache:
    return get_resources(request).cache


DB = Annotated[Database, Depends(get_database)]
CacheDep = Annotated[Cache, Depends(get_cache)]

"""The methods a path answers: the ``Allow`` header of 405 answers and of OPTIONS (RFC 9110).

Starlette's router puts on a 405 only the methods of the first route whose path matched, so a
path served by several routes (``GET`` and ``POST /api/v1/items``) advertised one of them. The
set is gathered here from every route, and only when a 405 is answered: nothing on the
request path of a served method.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

# Answered for every known path (see errors.method_not_allowed), so it is always allowed.
ALWAYS_ALLOWED = frozenset({"OPTIONS"})


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route serves at this request's path, sorted, OPTIONS included."""
    allowed = set(ALWAYS_ALLOWED)
    for context in iter_route_contexts(routes):
        methods = context.methods
        if methods and context.matches(scope)[0] is not Match.NONE:
            allowed |= methods
    return sorted(allowed)

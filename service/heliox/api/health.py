"""Liveness, readiness, service info and the Prometheus endpoint."""

from __future__ import annotations

import contextlib
import logging
from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from heliox import __version__
from heliox.api.auth import bearer_matches
from heliox.api.deps import DbHealthDep, get_resources
from heliox.core import metrics
from heliox.core.errors import error_response
from heliox.core.resources import NotStarted
from heliox.schemas.health import Liveness, Readiness, ServiceInfo

logger = logging.getLogger("heliox.health")

_OK = b'{"status":"ok"}'
_METRICS_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="metrics"'}


async def health() -> Response:
    # Pre-rendered: this is the probe and benchmark path, so it skips serialization.
    return Response(_OK, media_type="application/json")


async def health_db(request: Request, db_health: DbHealthDep) -> Any:
    ok, message = await db_health.check()
    if not ok:
        # The driver's message names the database host and port: only development shows it.
        # Elsewhere it goes to the log, on a line with this response's request ID.
        if get_resources(request).settings.is_development:
            public = f"Database unavailable: {message}"
        else:
            logger.warning("database check failed", extra={"detail": message})
            public = "Database unavailable"
        return error_response(503, public, {"database": "disconnected"}, {"Retry-After": "1"})
    return {"status": "ok", "database": "connected", "message": message}


async def info(request: Request) -> dict[str, str]:
    return {
        "name": "heliox",
        "version": __version__,
        "environment": get_resources(request).settings.env,
    }


async def metrics_endpoint(request: Request) -> Response:
    resources = get_resources(request)
    token = resources.settings.metrics_token
    # METRICS_TOKEN set: scrapers send it (the chart's ServiceMonitor, bearerTokenSecret).
    if token is not None and not bearer_matches(request, token.get_secret_value()):
        return error_response(
            401, "This endpoint needs the metrics bearer token", None, _METRICS_CHALLENGE
        )
    with contextlib.suppress(NotStarted):  # no pool to report before startup
        resources.sample_gauges()
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)


def add_routes(app: FastAPI) -> None:
    """Register on the app itself, not through an included router (see create_app)."""
    tags: list[str | Enum] = ["health"]
    # The response models document the bodies; /health's pre-rendered Response skips them.
    app.get(
        "/health",
        tags=tags,
        response_model=Liveness,
        summary="Liveness: the process serves requests; touches no dependency",
    )(health)
    app.get(
        "/health/db",
        tags=tags,
        response_model=Readiness,
        summary="Readiness: the database answers (bounded, cached about a second)",
    )(health_db)
    app.get(
        "/", tags=tags, response_model=ServiceInfo, summary="Service name, version and environment"
    )(info)
    app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)

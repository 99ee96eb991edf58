"""The application factory: routers, error handlers, middleware, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from heliox import __version__
from heliox.api import health, items, keys
from heliox.api.flat import FlatRoute, match_static_paths_exactly
from heliox.api.openapi import install_openapi, operation_id
from heliox.core.config import Settings, get_settings
from heliox.core.cors import cors_options
from heliox.core.errors import install_exception_handlers
from heliox.core.logging import configure_logging
from heliox.core.middleware import HelioxMiddleware
from heliox.core.resources import Resources


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    resources = Resources(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await resources.start()
        try:
            yield
        finally:
            await resources.stop()

    docs = settings.serve_api_docs
    app = FastAPI(
        title="Heliox-AI API",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        generate_unique_id_function=operation_id,
        # Tracing is HelioxMiddleware's step (core/otel.py). FastAPI's built-in telemetry would
        # add a second request span whenever a global provider exists, and checks for one on
        # every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.route_class = FlatRoute  # every route added below (api/flat.py)
    app.state.resources = resources
    install_exception_handlers(app)
    # Probes, /metrics and the items are the app's own routes, probes matched first: FastAPI
    # dispatches an included router as one more routing level, which costs about 12-15 us a
    # request. Key management (rare, admin only) stays a router.
    health.add_routes(app)
    items.add_routes(app)
    match_static_paths_exactly(app.router)  # the item route is the seventh tried (api/flat.py)
    app.include_router(keys.router)
    install_openapi(app)  # completes the document from the routes, whenever they were added

    # Added last = outermost: CORS preflights also get request IDs, headers and metrics. The
    # errors HelioxMiddleware answers itself (413, 429, 500) never pass CORSMiddleware: it adds
    # the same CORS headers to them from the same options.
    cors = cors_options(settings)
    if cors is not None:
        app.add_middleware(CORSMiddleware, **cors)
    app.add_middleware(HelioxMiddleware, resources=resources, cors=cors)
    return app

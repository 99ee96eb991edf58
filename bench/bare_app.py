"""The baseline for ``make bench``: a bare FastAPI app with our ``/health`` and nothing else.

Served by the same gunicorn command, gunicorn.conf.py and worker class as the service
(``gunicorn -c service/gunicorn.conf.py bench.bare_app:app``), so the /health ratio measures
what the service adds on that path: its middleware, router and exception handlers. The handler
is the service's own (a pre-rendered body), so serialization is not part of the difference.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import Response

app = FastAPI()

_OK = b'{"status":"ok"}'


@app.get("/health")
async def health() -> Response:
    return Response(_OK, media_type="application/json")

"""The gunicorn worker class: the uvicorn-worker package's worker with our server settings."""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker


class Worker(UvicornWorker):
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "auto",  # uvloop when installed
        "http": "auto",  # httptools when installed
        "server_header": False,  # do not advertise the server software
        "access_log": False,  # HelioxMiddleware writes the access line (with duration, request ID)
        "proxy_headers": True,  # client address from X-Forwarded-For of FORWARDED_ALLOW_IPS
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Finish in-flight requests and run lifespan shutdown (closing the engine and Redis)
        # a little before gunicorn's graceful timeout would SIGKILL the worker.
        graceful = float(self.cfg.graceful_timeout)
        self.config.timeout_graceful_shutdown = max(1, int(graceful - min(3.0, graceful / 3)))

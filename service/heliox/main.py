"""ASGI entry point: ``heliox.main:app`` (gunicorn and ``make run``)."""

from __future__ import annotations

import sys

from fastapi import FastAPI

from heliox.app import create_app
from heliox.core.config import ConfigError


def _create_or_exit() -> FastAPI:
    try:
        return create_app()
    except ConfigError as exc:
        for line in exc.lines:
            print(f"heliox: configuration error: {line}", file=sys.stderr)
        raise SystemExit(1) from None


app = _create_or_exit()

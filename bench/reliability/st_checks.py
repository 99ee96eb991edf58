"""Checks schemathesis runs beside its own: ``test_contract.py`` loads this file through
``SCHEMATHESIS_HOOKS``, and ``--checks all`` includes them.

What the document cannot say: the ID in an error body is the one in the ``X-Request-ID`` header
of the same answer (the document says both exist and what they look like).
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.check
def error_body_names_the_request_id(ctx: Any, response: Any, case: Any) -> None:
    if response.status_code < 400:
        return
    values = response.headers.get("x-request-id") or []
    header = values[0] if isinstance(values, list) and values else values
    if not header:
        raise AssertionError(f"{response.status_code} without X-Request-ID")
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"{response.status_code} body is not JSON") from exc
    if not isinstance(body, dict) or body.get("request_id") != header:
        raise AssertionError(
            f"{response.status_code}: body request_id {body.get('request_id')!r} "
            f"is not the header's {header!r}"
            if isinstance(body, dict)
            else f"{response.status_code}: body is not an object"
        )

"""Request IDs: keep a sane incoming X-Request-ID, otherwise make a UUID4."""

from __future__ import annotations

import re
import uuid

MAX_LENGTH = 128
# Letters, digits and a few separators: safe in headers, log lines and JSON without escaping.
_SANE = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def pick_request_id(incoming: bytes | None) -> str:
    if incoming and len(incoming) <= MAX_LENGTH and _SANE.fullmatch(incoming):
        return incoming.decode("ascii")
    return str(uuid.uuid4())

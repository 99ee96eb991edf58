"""Request IDs: keep a sane incoming X-Request-ID, otherwise make a UUID4."""

from __future__ import annotations

import os
import random
import re

MAX_LENGTH = 128
# Letters, digits and a few separators: safe in headers, log lines and JSON without escaping.
SANE_PATTERN = "[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"  # the document's pattern too
_SANE = re.compile(SANE_PATTERN.encode())


# Request IDs correlate log lines; they are not secrets, so a fast PRNG will do: uuid.uuid4()
# makes a getrandom() system call per request, a measurable share of a /health request.
_random = random.Random()  # noqa: S311 - correlation IDs, not secrets
os.register_at_fork(after_in_child=_random.seed)  # forked workers must not repeat each other
_VERSION_4 = 0x4000 << 64 | 0x8000 << 48  # version nibble 4, RFC 4122 variant bits 10
_CLEAR = ~(0xF000 << 64 | 0xC000 << 48)


def new_request_id() -> str:
    """A random (version 4) UUID in its canonical 36-character form."""
    h = f"{(_random.getrandbits(128) & _CLEAR) | _VERSION_4:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def pick_request_id(incoming: bytes | None) -> str:
    if incoming and len(incoming) <= MAX_LENGTH and _SANE.fullmatch(incoming):
        return incoming.decode("ascii")
    return new_request_id()

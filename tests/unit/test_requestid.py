"""Incoming X-Request-ID values are kept only when sane."""

from __future__ import annotations

import uuid

import pytest

from heliox.core.requestid import pick_request_id


@pytest.mark.parametrize("sane", [b"abc", b"req-1.2_3:4", b"A" * 128, str(uuid.uuid4()).encode()])
def test_sane_ids_are_kept(sane: bytes) -> None:
    assert pick_request_id(sane) == sane.decode()


@pytest.mark.parametrize(
    "insane",
    [
        None,
        b"",
        b"A" * 129,
        b"has space",
        b'quote"',
        b"new\nline",
        b"-leading",
        "caf\u00e9".encode(),
        b"a=b",
    ],
)
def test_other_ids_are_replaced_by_a_uuid4(insane: bytes | None) -> None:
    made = pick_request_id(insane)
    assert uuid.UUID(made).version == 4
    assert made != (insane or b"").decode(errors="replace")

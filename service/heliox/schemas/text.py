"""Text the API stores: what it refuses, written once for the validators and the document.

PostgreSQL ``text`` cannot hold NUL (U+0000), and the database stores UTF-8, which cannot
encode a lone UTF-16 surrogate (U+D800-U+DFFF, which JSON's ``"\\ud800"`` can still name). The
validators refuse both (422). The OpenAPI document says so too, so a client or gateway that
follows it never sends what the service refuses: NUL in a ``pattern``; lone surrogates in the
``description`` (I-JSON, RFC 7493, forbids them), not the pattern, because Rust's and Go's regex
engines, schemathesis' validator among them, cannot compile a surrogate range and would reject
the whole document.

The patterns are built from explicit code point ranges: ``\\s`` means three different sets in
ECMA-262 (JSON Schema's dialect), Python's ``re`` and Rust's ``regex`` (pydantic-core).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

_Ranges = tuple[tuple[int, int], ...]

NUL: _Ranges = ((0x0000, 0x0000),)
LONE_SURROGATES: _Ranges = ((0xD800, 0xDFFF),)
# Unicode's White_Space property: what a name is trimmed of, and what it cannot consist of.
WHITESPACE: _Ranges = (
    (0x0009, 0x000D),
    (0x0020, 0x0020),
    (0x0085, 0x0085),
    (0x00A0, 0x00A0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
)


def _char_class(ranges: _Ranges) -> str:
    return "".join(
        f"\\u{start:04x}" if start == end else f"\\u{start:04x}-\\u{end:04x}"
        for start, end in ranges
    )


_NOT_NUL = f"[^{_char_class(NUL)}]"
_VISIBLE = f"[^{_char_class(NUL)}{_char_class(WHITESPACE)}]"
# Any text without NUL; the same with at least one character that is not whitespace.
STORABLE_PATTERN = f"^{_NOT_NUL}*$"
NOT_BLANK_PATTERN = f"^{_NOT_NUL}*{_VISIBLE}{_NOT_NUL}*$"
REFUSED_TEXT = "No NUL (U+0000); as in I-JSON (RFC 7493), no lone surrogates (U+D800-U+DFFF)."

_REFUSED_CHAR = re.compile(f"[{_char_class(NUL)}{_char_class(LONE_SURROGATES)}]")
_WHITESPACE_CHARS = "".join(chr(c) for start, end in WHITESPACE for c in range(start, end + 1))


def refuse_unstorable(value: str) -> str:
    # pydantic already refuses lone surrogates from JSON (string_unicode); NUL it lets through.
    if _REFUSED_CHAR.search(value):
        raise ValueError("must not contain NUL characters (U+0000) or lone surrogates")
    return value


def trim_not_blank(value: str) -> str:
    trimmed = value.strip(_WHITESPACE_CHARS)
    if not trimmed:
        raise ValueError("must contain a character that is not whitespace")
    return trimmed


@dataclass(frozen=True, slots=True)
class DocumentedText:
    """Says in the document what the validators above enforce: the ``pattern`` and the refusals."""

    pattern: str
    description: str = REFUSED_TEXT

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema: dict[str, Any] = handler(core_schema)
        schema["pattern"] = self.pattern
        schema["description"] = self.description
        return schema

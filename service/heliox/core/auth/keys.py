"""The API key format: ``hx_<prefix>_<secret>``.

The prefix (12 lowercase letters or digits, about 62 bits) identifies the key in listings, logs
and the database; the secret (43 letters or digits, about 256 bits) is what proves it. Only the
SHA-256 of the secret is stored, and compared in constant time. A secret this random needs no
slow password hash: guessing it is hopeless, and the check runs on every cache miss.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

KEY_MARK = "hx_"
PREFIX_LENGTH = 12
SECRET_LENGTH = 43
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
# What the service accepts: its own keys, and ones made elsewhere of the same shape (the chart's
# randAlphaNum, `openssl rand -hex`): a longer secret is fine, a shorter one is refused.
PREFIX_PATTERN = rf"{KEY_MARK}[a-z0-9]{{{PREFIX_LENGTH}}}"
_KEY = re.compile(rf"({PREFIX_PATTERN})_([A-Za-z0-9]{{32,128}})")
FORMAT_HINT = "hx_ + 12 lowercase letters or digits + _ + 32 to 128 letters or digits"


@dataclass(frozen=True, slots=True)
class ParsedKey:
    prefix: str
    secret: str

    def __repr__(self) -> str:  # a stray repr() in a log line must not carry the secret
        return f"ParsedKey(prefix={self.prefix!r}, secret=***)"


def generate() -> str:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    return f"{KEY_MARK}{prefix}_{secret}"


def parse(value: str) -> ParsedKey | None:
    match = _KEY.fullmatch(value)
    if match is None:
        return None
    return ParsedKey(match.group(1), match.group(2))


def looks_like_key(value: str) -> bool:
    """Whether a bearer value is meant as an API key (not an OIDC token)."""
    return value.startswith(KEY_MARK)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret).encode(), stored_hash.encode())

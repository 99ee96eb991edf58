"""Roles and callers: reader < writer < admin, each allowing what the ones below it allow."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    reader = "reader"  # GET routes
    writer = "writer"  # reader + writes
    admin = "admin"  # writer + key management

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank

    @classmethod
    def parse(cls, value: object) -> Role | None:
        """A role name, any case; None for anything else."""
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                return None
        return None


_RANK = {Role.reader: 1, Role.writer: 2, Role.admin: 3}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling. ``identity`` is public (a key's prefix, ``oidc:<subject>``): it is what
    logs, audit lines and rate-limit counters name, never a secret."""

    identity: str
    role: Role | None  # None: an OIDC token whose claim names no known role
    kind: str  # "key", "token" or "anonymous" (AUTH_ENABLED=false)

    def allows(self, needed: Role) -> bool:
        return self.role is not None and self.role.allows(needed)

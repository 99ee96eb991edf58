"""The audit trail: one line per write and per key change, on the ``heliox.audit`` logger.

Each line says who (a key's public prefix, ``oidc:<subject>``, ``heliox-admin``), what (an
action such as ``item.create`` or ``key.revoke``, and its target) and, like every line, the
request ID. Never a key or a token.
"""

from __future__ import annotations

import logging
from typing import Any

from heliox.core.auth.roles import Caller

logger = logging.getLogger("heliox.audit")


def audit(actor: Caller | str, action: str, target: str, **extra: Any) -> None:
    who = actor if isinstance(actor, str) else actor.identity
    logger.info(
        "%s %s", action, target, extra={"actor": who, "action": action, "target": target, **extra}
    )

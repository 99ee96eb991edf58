"""The access line: one per request, written by HelioxMiddleware when the response is done.

The access line is the one log line of every request, and with logging as
:func:`heliox.core.logging.configure_logging` leaves it, it reaches one handler, ours. Then it
is formatted by that handler's formatter from its fields and written, without a LogRecord and
the logging machinery's walk (6.3 us a line alone instead of 11.5; over HTTP the line still
costs ~15-20 us of a cached read's worker CPU, docs/ARCHITECTURE.md "Performance"). The text is
the same either way: one formatter method makes both (tests/unit/test_access_log.py). Whenever
anything else could see the record (a handler or filter added anywhere on its way: pytest's log
capture, a user's logging configuration), it is a record again, handled as any other.
"""

from __future__ import annotations

import logging
import time

from heliox.core.logging import Fields, request_id_var, sole_handler

access_logger = logging.getLogger("heliox.access")


def access_line(method: str, path: str, status: int, elapsed: float, client: str) -> None:
    logger = access_logger
    if not logger.isEnabledFor(logging.INFO):
        return
    extras = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(elapsed * 1000, 3),
        "client": client,
    }
    direct = sole_handler(logger, logging.INFO)
    if direct is not None:
        handler, formatter = direct
        line = formatter.line(
            Fields(
                time.time(),
                "INFO",
                logger.name,
                f"{method} {path} {status}",
                request_id_var.get(),
                extras,
            )
        )
        handler.write_line(line)
        return
    # Built with makeRecord + handle instead of ``info()``, which would walk the stack for a
    # source location (findCaller) that is always this function and that no format prints.
    record = logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %s",
        (method, path, status),
        None,
        extra=extras,
    )
    logger.handle(record)

"""The access line: one per request, written by HelioxMiddleware when the response is done.

The access line is the one log line of every request, and with logging as
:func:`heliox.core.logging.configure_logging` leaves it, it reaches one handler, ours. Then it
is made by that handler's formatter (``access``: the kv format's is one f-string) and written,
without a LogRecord and the logging machinery's walk (~4 us a line alone, written; 11.5 as a
record; over HTTP a line costs about twice what it costs alone, docs/ARCHITECTURE.md
"Performance"). The text is the same either way (tests/unit/test_access_log.py). Whenever
anything else could see the record (a handler or filter added anywhere on its way: pytest's log
capture, a user's logging configuration), it is a record again, handled as any other.
"""

from __future__ import annotations

import logging
import time

from heliox.core.log_format import access_extras, request_id_var
from heliox.core.logging import sole_handler

access_logger = logging.getLogger("heliox.access")


def access_line(method: str, path: str, status: int, elapsed: float, client: str) -> None:
    logger = access_logger
    if not logger.isEnabledFor(logging.INFO):
        return
    duration_ms = round(elapsed * 1000, 3)
    direct = sole_handler(logger, logging.INFO)
    if direct is not None:
        handler, formatter = direct
        handler.write_line(
            formatter.access(
                time.time(),
                logger=logger.name,
                request_id=request_id_var.get(),
                method=method,
                path=path,
                status=status,
                duration_ms=duration_ms,
                client=client,
            )
        )
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
        extra=access_extras(method, path, status, duration_ms, client),
    )
    logger.handle(record)

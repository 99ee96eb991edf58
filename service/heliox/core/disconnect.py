"""A request whose client went away: how to tell, and the status it is recorded with.

Used by the middleware (core/middleware.py) when a request ends before its answer started.
"""

from __future__ import annotations

from starlette.types import Receive

# nginx's "client closed request": the request ended with nobody left to read an answer. Not a
# server error, and nothing is sent.
CLIENT_CLOSED_REQUEST = 499


def client_disconnected(receive: Receive) -> bool:
    """Whether the server already holds this request's ``http.disconnect``: ``receive()``
    returns it without waiting.

    Asked only of a cancelled request, to tell a client that left (servers cancel such a
    request) from a cancellation with the client still there (uvicorn cancels a request still
    running past its graceful shutdown timeout and answers it 500 itself). It may consume a body
    chunk nobody will read any more.
    """
    pending = receive().__await__()
    try:
        pending.send(None)
    except StopIteration as done:
        message = done.value
        return isinstance(message, dict) and message.get("type") == "http.disconnect"
    except Exception:  # a server that will not receive now cannot say; never mask the cancel
        return False
    pending.close()  # it would wait for the client: still connected
    return False

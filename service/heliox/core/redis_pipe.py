"""One multiplexed, pipelined Redis connection per worker for the hot read path.

redis-py's asyncio client spends ~85-108 us of Python per command (pool checkout, its retry
wrapper, ``asyncio.wait_for``, the stream writer's drain, the parser's coroutines). Here every
caller writes its command on one shared connection without waiting and awaits its own future;
Redis answers a connection's commands in order, so replies are matched to a deque of futures,
and ``hiredis.Reader`` parses them in C: ~10 us a call from 32 concurrent tasks on one core.
The commands of one turn of the event loop leave in one write at its end (under load, the
requests that turn started all read the cache): one system call instead of one each.

Failure rules keep the replies aligned: a timeout, a lost connection or a protocol error closes
the connection and fails *every* pending call (their replies could no longer be matched); the
next call opens a new connection. Errors are redis-py's exception types, so the breaker in
:mod:`heliox.core.redis` treats both paths alike. One timer per connection (not one per call)
enforces the socket timeout: the oldest pending call always has the earliest deadline.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis

# redis-py maps error replies to its exception types (NOSCRIPT -> NoScriptError, WRONGPASS ->
# AuthenticationError, ...) with this classmethod; hiredis calls it for every error reply.
from redis._parsers.base import BaseParser
from redis.asyncio.connection import ConnectionPool, SSLConnection
from redis.exceptions import (
    ConnectionError,
    InvalidResponse,
    NoScriptError,
    RedisError,
    TimeoutError,
)

# A connection unused this long is replaced before use instead of trusted (redis-py's client
# here PINGs one idle for 30 s): a peer or a NAT may have dropped it silently, which would cost
# a full socket timeout and a breaker backoff to find out.
IDLE_SECONDS = 30.0

# A script's keys or arguments (redis-py's KeyT).
Command = Sequence[str | bytes]


def _pack(command: tuple[str | bytes | memoryview | int, ...]) -> bytes:
    """RESP encoding, in C (hiredis's stub types its argument as a one-tuple)."""
    return cast(bytes, hiredis.pack_command(command))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect, as redis-py's own URL parsing says."""

    host: str
    port: int
    path: str | None
    tls: ssl.SSLContext | None
    username: str | None
    password: str | None
    db: int
    client_name: str | None

    @property
    def where(self) -> str:
        return self.path or f"{self.host}:{self.port}"


def endpoint_of(pool: ConnectionPool) -> Endpoint | None:
    """Where ``pool`` (redis-py's reading of a URL) connects, or None where the pipe would not
    behave like redis-py (RESP3, decoded replies, a credential provider): those keep the
    redis-py path."""
    kw = pool.connection_kwargs
    if str(kw.get("protocol") or 2) != "2" or kw.get("decode_responses"):
        return None
    if kw.get("credential_provider") is not None:
        return None
    tls = None
    if issubclass(pool.connection_class, SSLConnection):
        # The very context redis-py builds from the URL's ssl_* options.
        template = pool.connection_class(**kw)
        tls = template.ssl_context.get()
    return Endpoint(
        host=kw.get("host") or "localhost",
        port=int(kw.get("port") or 6379),
        path=kw.get("path"),
        tls=tls,
        username=kw.get("username"),
        password=kw.get("password"),
        db=int(kw.get("db") or 0),
        client_name=kw.get("client_name"),
    )


class _Connection(asyncio.Protocol):
    """One socket: commands out, replies matched in order to the callers' futures."""

    def __init__(self, where: str, timeout: float) -> None:
        self.where = where
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self.reader = hiredis.Reader(
            protocolError=InvalidResponse, replyError=BaseParser.parse_error
        )
        self.waiters: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        # Commands written this turn of the event loop, sent together at its end (_flush).
        self.outbox: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.last_used = self.loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def usable(self) -> bool:
        return not self.closed and self.loop.time() - self.last_used < IDLE_SECONDS

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Write one packed command; its reply resolves the returned future."""
        future: asyncio.Future[Any] = self.loop.create_future()
        if self.closed or self.transport is None:  # lost while its caller was connecting
            future.set_exception(ConnectionError(f"Connection to {self.where} closed"))
            return future
        now = self.last_used = self.loop.time()
        if not self.outbox:
            self.loop.call_soon(self._flush)
        self.outbox.append(packed)
        self.waiters.append((future, now + self.timeout))
        if self.timer is None:
            self.timer = self.loop.call_at(now + self.timeout, self._check_deadline)
        return future

    def _flush(self) -> None:
        """One write (one system call, one segment over loopback) for every command this turn
        of the loop: under load, the requests a turn starts all read the cache at once."""
        outbox, self.outbox = self.outbox, []
        if self.closed or self.transport is None or not outbox:
            return
        self.transport.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiters = self.waiters
        while True:
            try:
                reply = self.reader.gets()
            except InvalidResponse as exc:
                self.fail(InvalidResponse, f"Protocol error from {self.where}: {exc}")
                return
            if reply is False:
                return
            if not waiters:
                self.fail(InvalidResponse, f"Reply from {self.where} to no command")
                return
            future = waiters.popleft()[0]
            if future.done():  # its caller was cancelled; the reply is dropped, in its turn
                continue
            if isinstance(reply, RedisError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        detail = f": {exc}" if exc else ""
        self.fail(ConnectionError, f"Connection to {self.where} closed{detail}")

    def _check_deadline(self) -> None:
        """The timer: fail everything once the oldest pending call is past its deadline."""
        self.timer = None
        if not self.waiters:
            return  # re-armed by the next send
        deadline = self.waiters[0][1]
        if self.loop.time() >= deadline:
            self.fail(TimeoutError, f"Timeout reading from {self.where}")
        else:
            self.timer = self.loop.call_at(deadline, self._check_deadline)

    def fail(self, kind: type[RedisError], message: str) -> None:
        """Close the socket and fail every pending call: their replies can't be matched."""
        self.closed = True
        self.outbox.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.abort()
        while self.waiters:
            future = self.waiters.popleft()[0]
            if not future.done():
                future.set_exception(kind(message))


class RedisPipe:
    """The worker's pipelined connection, opened on first use and after every failure."""

    def __init__(self, endpoint: Endpoint, socket_timeout: float, connect_timeout: float) -> None:
        self.endpoint = endpoint
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self._conn: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None

    async def execute(self, *command: str | bytes | memoryview | int) -> Any:
        """One command's reply (an error reply raised as redis-py's exception for it)."""
        return await self._send(_pack(tuple(command)))

    async def evalsha(
        self, sha: str, script: str | bytes | memoryview, keys: Command, args: Command
    ) -> Any:
        """EVALSHA; a server that lost the script (restart, SCRIPT FLUSH) gets it loaded and
        the call retried once, as redis-py's Script does."""
        packed = _pack(("EVALSHA", sha, len(keys), *keys, *args))
        try:
            return await self._send(packed)
        except NoScriptError:
            await self.execute("SCRIPT", "LOAD", script)
            return await self._send(packed)

    async def _send(self, packed: bytes) -> Any:
        conn = self._conn
        if conn is None or not conn.usable():
            conn = await self._connection()
        return await conn.send(packed)

    async def _connection(self) -> _Connection:
        """The open connection, or one shared attempt at opening one: concurrent callers must
        not each pay a connect timeout in turn while the server is unreachable."""
        conn = self._conn
        if conn is not None and conn.usable():
            return conn
        if conn is not None:
            conn.fail(ConnectionError, f"Connection to {self.endpoint.where} idle, replaced")
            self._conn = None
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._opened)
        return await asyncio.shield(self._connecting)

    def _opened(self, task: asyncio.Task[_Connection]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._conn = task.result()

    async def _open(self) -> _Connection:
        """Connect, AUTH and SELECT, all within the connect timeout."""
        endpoint = self.endpoint
        try:
            async with asyncio.timeout(self.connect_timeout):
                conn = await self._dial()
                try:
                    await self._handshake(conn)
                except BaseException:
                    conn.fail(ConnectionError, f"Handshake with {endpoint.where} failed")
                    raise
        except builtins.TimeoutError as exc:  # the builtin: asyncio.timeout's
            raise TimeoutError(f"Timeout connecting to {endpoint.where}") from exc
        except OSError as exc:
            raise ConnectionError(f"Error connecting to {endpoint.where}: {exc}") from exc
        return conn

    async def _dial(self) -> _Connection:
        # asyncio and uvloop both set TCP_NODELAY on TCP transports, as redis-py does by hand.
        endpoint, loop = self.endpoint, asyncio.get_running_loop()
        conn = _Connection(endpoint.where, self.socket_timeout)
        if endpoint.path is not None:
            await loop.create_unix_connection(lambda: conn, endpoint.path)
        else:
            await loop.create_connection(
                lambda: conn, endpoint.host, endpoint.port, ssl=endpoint.tls
            )
        return conn

    async def _handshake(self, conn: _Connection) -> None:
        endpoint = self.endpoint
        if endpoint.username or endpoint.password:
            # As redis-py: AUTH <password>, or AUTH <username> <password> for an ACL user.
            password = endpoint.password or ""
            credentials = (endpoint.username, password) if endpoint.username else (password,)
            await conn.send(_pack(("AUTH", *credentials)))
        if endpoint.db:
            await conn.send(_pack(("SELECT", endpoint.db)))
        if endpoint.client_name:
            await conn.send(_pack(("CLIENT", "SETNAME", endpoint.client_name)))

    async def close(self) -> None:
        """Fail whatever is pending and close the socket (from RedisClient.close)."""
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError):
                await self._connecting
        if self._conn is not None:
            self._conn.fail(ConnectionError, "Connection closed by the client")
            self._conn = None

"""The pipelined connection (heliox.core.redis_pipe) on a real redis-server: replies matched to
their callers, AUTH and SELECT, NOSCRIPT recovery, outages and timeouts that fail every pending
call and recover on a fresh connection, and the breaker of RedisClient on top of it."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
from redis import exceptions

from heliox.core.cache import _READ
from heliox.core.redis import RedisClient, RedisUnavailable
from heliox.core.redis_pipe import Endpoint, RedisPipe, endpoint_of
from tests.helpers import make_settings
from tests.servers import RedisServer

GET_TWO = "return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}"


def _endpoint(url: str) -> Endpoint | None:
    """What the client reads of ``url``: redis-py's pool for it (RedisClient passes its own)."""
    return endpoint_of(redis.asyncio.ConnectionPool.from_url(url))


def _run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())


def _client(url: str, **settings: Any) -> RedisClient:
    return RedisClient(url, make_settings(redis_url=url, **settings))


def _pipe(url: str, timeout: float = 2.0) -> RedisPipe:
    endpoint = _endpoint(url)
    assert endpoint is not None
    return RedisPipe(endpoint, socket_timeout=timeout, connect_timeout=2.0)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A server of this test's own (stopped, paused or password-protected here)."""
    with RedisServer() as server:
        yield server


def _direct(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


def test_concurrent_callers_each_get_their_own_reply(redis_url: str) -> None:
    direct = _direct(redis_url)
    for i in range(200):
        direct.set(f"k{i}", f"value-{i}".encode() * (1 + i % 7))

    async def scenario() -> None:
        client = _client(redis_url)
        script = client.redis.register_script(GET_TWO)
        try:

            async def read(i: int) -> Any:
                return await client.eval_script(script, keys=[f"k{i}", "absent"], args=[])

            replies = await asyncio.gather(*(read(i) for i in range(200)))
            for i, reply in enumerate(replies):
                assert reply == [f"value-{i}".encode() * (1 + i % 7), None], i
            # The same Python values as redis-py's path, for the cache's own read script.
            read_script = client.redis.register_script(_READ)
            args = (["heliox:items:gen"], ["heliox:items:g", ":item:1"])
            piped = await client.eval_script(read_script, *args)
            assert piped == await read_script(keys=args[0], args=args[1])
            assert isinstance(piped, list)
            assert isinstance(piped[0], bytes)
            assert piped[1] is None
            assert client.pipe is not None
            assert client.pipe._conn is not None
        finally:
            await client.close()

    _run(scenario)
    direct.close()


def test_a_cancelled_caller_does_not_shift_the_replies(redis_url: str) -> None:
    _direct(redis_url).set("mine", b"mine")

    async def scenario() -> None:
        pipe = _pipe(redis_url)
        try:
            slow = asyncio.ensure_future(pipe.execute("BLPOP", "nothing", "0.3"))
            await asyncio.sleep(0.05)
            slow.cancel()  # its reply (nil, after 0.3 s) still comes, and must be dropped
            assert await pipe.execute("GET", "mine") == b"mine"
            assert await pipe.execute("PING") == b"PONG"
        finally:
            await pipe.close()

    _run(scenario)


def test_password_acl_user_and_database(private_redis: RedisServer) -> None:
    port = private_redis.port
    assert private_redis.command("CONFIG", "SET", "requirepass", "s3cret") == "+OK"
    admin = redis.Redis(port=port, password="s3cret", socket_timeout=5)
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">r3ader", "~*", "+@all")
    admin.set("where", b"db0")
    admin.execute_command("SELECT", 3)  # this connection only; the pool holds one
    redis.Redis(port=port, password="s3cret", db=3).set("where", b"db3")

    async def scenario() -> None:
        for url in (
            f"redis://:s3cret@127.0.0.1:{port}/3",
            f"redis://reader:r3ader@127.0.0.1:{port}/3",
        ):
            pipe = _pipe(url)
            try:
                assert await pipe.execute("GET", "where") == b"db3", url
            finally:
                await pipe.close()
        pipe = _pipe(f"redis://:wrong@127.0.0.1:{port}/0")
        with pytest.raises(exceptions.AuthenticationError):
            await pipe.execute("GET", "where")
        await pipe.close()
        pipe = _pipe(f"redis://127.0.0.1:{port}/0")
        with pytest.raises(exceptions.AuthenticationError):  # NOAUTH
            await pipe.execute("GET", "where")
        await pipe.close()

    _run(scenario)
    admin.close()


def test_noscript_after_script_flush_is_recovered(redis_url: str) -> None:
    direct = _direct(redis_url)
    direct.set("a", b"1")
    direct.set("b", b"2")

    async def scenario() -> None:
        client = _client(redis_url)
        script = client.redis.register_script(GET_TWO)
        try:
            # Never loaded: the first call meets NOSCRIPT too.
            assert await client.eval_script(script, keys=["a", "b"], args=[]) == [b"1", b"2"]
            assert direct.script_exists(script.sha) == [True]
            direct.script_flush()
            assert await client.eval_script(script, keys=["b", "a"], args=[]) == [b"2", b"1"]
            assert direct.script_exists(script.sha) == [True]
            assert client.available
        finally:
            await client.close()

    _run(scenario)
    direct.close()


def test_error_replies_are_raised_as_redis_py_raises_them(redis_url: str) -> None:
    async def scenario() -> None:
        pipe = _pipe(redis_url)
        try:
            await pipe.execute("SET", "text", "x")
            with pytest.raises(exceptions.ResponseError, match="not an integer"):
                await pipe.execute("INCR", "text")
            assert await pipe.execute("GET", "text") == b"x"  # the connection is fine
        finally:
            await pipe.close()

    _run(scenario)


def test_stopped_server_fails_pending_and_new_calls_fast_then_recovers(
    private_redis: RedisServer,
) -> None:
    async def scenario() -> None:
        client = _client(private_redis.url, redis_socket_timeout=5, redis_backoff_seconds=0.3)
        script = client.redis.register_script(GET_TWO)
        assert client.pipe is not None
        try:
            assert await client.eval_script(script, keys=["a", "b"], args=[]) == [None, None]
            # A blocked command holds the connection: the calls behind it stay pending.
            blocked = asyncio.ensure_future(client.pipe.execute("BLPOP", "nothing", "0"))
            pending = [
                asyncio.ensure_future(client.eval_script(script, keys=["a", "b"], args=[]))
                for _ in range(50)
            ]
            await asyncio.sleep(0.1)
            assert not any(call.done() for call in pending)
            started = time.monotonic()
            await asyncio.to_thread(private_redis.stop)
            results = await asyncio.gather(blocked, *pending, return_exceptions=True)
            assert time.monotonic() - started < 2.0  # not the 5 s socket timeout
            assert isinstance(results[0], exceptions.ConnectionError)
            assert all(isinstance(r, RedisUnavailable) for r in results[1:]), results[1:]
            assert not client.available  # the breaker is open
            with pytest.raises(RedisUnavailable):
                await client.eval_script(script, keys=["a", "b"], args=[])
            await asyncio.sleep(0.35)
            started = time.monotonic()
            with pytest.raises(RedisUnavailable) as refused:  # tried, and refused at once
                await client.eval_script(script, keys=["a", "b"], args=[])
            assert isinstance(refused.value.__cause__, exceptions.ConnectionError)
            assert time.monotonic() - started < 1.0

            await asyncio.to_thread(private_redis.start)
            await asyncio.sleep(0.35)
            assert await client.eval_script(script, keys=["a", "b"], args=[]) == [None, None]
            assert client.available
        finally:
            await client.close()

    _run(scenario)


def test_a_timeout_fails_every_pending_call_and_the_next_call_reconnects(
    redis_url: str, redis_server: RedisServer
) -> None:
    async def scenario() -> None:
        client = _client(redis_url, redis_socket_timeout=0.2, redis_backoff_seconds=0)
        script = client.redis.register_script(GET_TWO)
        pipe = client.pipe
        assert pipe is not None
        try:
            assert await client.eval_script(script, keys=["a", "b"], args=[]) == [None, None]
            first_id = await pipe.execute("CLIENT", "ID")
            # The server stops answering for a second (as DEBUG SLEEP would).
            assert redis_server.command("CLIENT", "PAUSE", "1000", "ALL") == "+OK"
            paused_until = time.monotonic() + 1.0
            started = time.monotonic()
            calls = [client.eval_script(script, keys=["a", "b"], args=[]) for _ in range(20)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert time.monotonic() - started < 0.7
            assert all(isinstance(r, RedisUnavailable) for r in results), results
            assert all(isinstance(r.__cause__, exceptions.TimeoutError) for r in results)
            await asyncio.sleep(max(0.0, paused_until - time.monotonic()) + 0.1)

            assert await client.eval_script(script, keys=["a", "b"], args=[]) == [None, None]
            assert await pipe.execute("CLIENT", "ID") != first_id  # a fresh connection
        finally:
            await client.close()

    _run(scenario)


def test_close_fails_pending_calls(redis_url: str) -> None:
    async def scenario() -> None:
        pipe = _pipe(redis_url)
        blocked = asyncio.ensure_future(pipe.execute("BLPOP", "nothing", "0"))
        await asyncio.sleep(0.05)
        await pipe.close()
        with pytest.raises(exceptions.ConnectionError):
            await blocked

    _run(scenario)


def test_a_pipelined_call_is_a_redis_client_span_when_tracing(redis_url: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415 - tracing tier only
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
        InMemorySpanExporter,
    )
    from opentelemetry.trace import SpanKind  # noqa: PLC0415

    from heliox.core import otel  # noqa: PLC0415

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def scenario() -> None:
        client = _client(redis_url)
        otel._instrument_redis(provider, client)
        script = client.redis.register_script(GET_TWO)
        try:
            with provider.get_tracer("test").start_as_current_span("request"):
                await client.eval_script(script, keys=["a", "b"], args=[])
            assert client.pipe is not None
            assert client.pipe._conn is not None
        finally:
            await client.close()

    _run(scenario)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    request, command = spans["request"], spans["EVALSHA"]
    assert command.kind is SpanKind.CLIENT
    assert command.parent is not None
    assert command.parent.span_id == request.context.span_id
    attributes = dict(command.attributes or {})
    assert attributes["db.system"] == "redis"
    assert attributes["db.statement"] == "EVALSHA ? ? ? ?"  # no script, keys or values
    assert "redis.call" not in str(attributes)


def test_the_endpoint_is_redis_pys_reading_of_the_url() -> None:
    tcp = _endpoint("redis://us%40r:p%40ss@cache.internal:6380/2?client_name=heliox")
    assert tcp is not None
    assert (tcp.host, tcp.port, tcp.db, tcp.tls, tcp.path) == (
        "cache.internal",
        6380,
        2,
        None,
        None,
    )
    assert (tcp.username, tcp.password, tcp.client_name) == ("us@r", "p@ss", "heliox")
    tls = _endpoint("rediss://cache.internal:6380/0?ssl_cert_reqs=none")
    assert tls is not None
    assert tls.tls is not None
    assert tls.tls.verify_mode == ssl.CERT_NONE  # the context redis-py builds from the URL
    strict = _endpoint("rediss://cache.internal/0")
    assert strict is not None
    assert strict.tls is not None
    assert strict.tls.verify_mode == ssl.CERT_REQUIRED
    assert strict.tls.check_hostname
    unix = _endpoint("unix:///run/redis.sock?db=4")
    assert unix is not None
    assert (unix.path, unix.db) == ("/run/redis.sock", 4)
    # Where the pipe would not return what redis-py returns, the redis-py path stays.
    assert _endpoint("redis://localhost/0?protocol=3") is None
    assert _endpoint("redis://localhost/0?decode_responses=True") is None


def test_the_commands_of_one_loop_turn_leave_in_one_write(redis_url: str) -> None:
    """Under load the requests a turn of the event loop starts all read the cache: their
    commands go out together (one system call), and each still gets its own reply."""

    async def scenario() -> None:
        pipe = _pipe(redis_url)
        try:
            assert await pipe.execute("SET", "turn", "x")  # connected
            conn = pipe._conn
            assert conn is not None
            assert conn.transport is not None
            writes: list[bytes] = []
            write = conn.transport.write

            def counting(data: bytes | bytearray | memoryview) -> None:
                writes.append(bytes(data))
                write(data)

            conn.transport.write = counting  # type: ignore[method-assign]
            replies = await asyncio.gather(*(pipe.execute("ECHO", str(i)) for i in range(50)))
            assert replies == [str(i).encode() for i in range(50)]
            assert len(writes) == 1, len(writes)
            # A lone command is not held back: it leaves at the end of its own turn.
            assert await pipe.execute("GET", "turn") == b"x"
            assert len(writes) == 2
        finally:
            await pipe.close()

    _run(scenario)

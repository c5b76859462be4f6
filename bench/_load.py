"""A closed-loop HTTP/1.1 load generator for the service benchmarks (``bench/share.py``).

``clients`` clients, each on its own keep-alive connection, each sending its next request
as soon as the previous answer is whole (closed loop: the offered load follows the server,
so requests/s is the server's throughput at that concurrency). Requests are pre-encoded
bytes; answers are parsed by ``httptools`` (C, the parser uvicorn uses), so the generator
costs far less CPU per request than an ``httpx`` client would — on a shared machine the
generator must not be what limits the bare endpoint.

Counted after ``warmup_s``: requests answered, their latencies (from writing the request to
the last byte of the answer), status codes, bytes; an error is a non-2xx answer, a broken
or refused connection or an answer later than ``timeout_s`` (the client reconnects).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httptools


@dataclass
class LoadResult:
    clients: int
    seconds: float  # the measured window (after the warm-up)
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0  # non-2xx answers, broken connections, timeouts
    error_kinds: dict[str, int] = field(default_factory=dict)
    body_bytes: int = 0
    answered: int = 0  # every answer, the warm-up's too (for CPU per request)

    @property
    def requests(self) -> int:
        return len(self.latencies_s)

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the latencies, nearest rank, in ms."""
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        rank = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))
        return ordered[rank] * 1000

    def summary(self) -> dict:
        return {
            "clients": self.clients,
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "per_s": round(self.per_s, 1),
            "p50_ms": round(self.percentile_ms(0.50), 2),
            "p90_ms": round(self.percentile_ms(0.90), 2),
            "p99_ms": round(self.percentile_ms(0.99), 2),
            "max_ms": round(max(self.latencies_s, default=0) * 1000, 2),
            "errors": self.errors,
            "error_kinds": dict(sorted(self.error_kinds.items())),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "mean_body_bytes": round(self.body_bytes / self.requests) if self.requests else 0,
        }


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future | None = None
        self.body = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"unparsable answer: {exc}"))

    def on_body(self, body: bytes) -> None:
        self.body += len(body)

    def on_message_complete(self) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((self.parser.get_status_code(), self.body))

    def connection_lost(self, exc) -> None:
        self._fail(ConnectionError("connection closed"))

    def _fail(self, exc: Exception) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def send(self, request: bytes) -> asyncio.Future:
        self.answer = asyncio.get_running_loop().create_future()
        self.body = 0
        self.transport.write(request)
        return self.answer


def request_bytes(host: str, port: int, target: str, headers: dict[str, str]) -> bytes:
    """A GET of ``target`` (path and query) as HTTP/1.1 keep-alive bytes."""
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _client(host, port, requests, start, warm_until, stop_at, timeout_s, out) -> None:
    loop = asyncio.get_running_loop()
    conn: _Connection | None = None
    i = start
    while (now := time.perf_counter()) < stop_at:
        counted = now >= warm_until
        try:
            if conn is None or conn.transport is None or conn.transport.is_closing():
                _, conn = await loop.create_connection(_Connection, host, port)
            t0 = time.perf_counter()
            async with asyncio.timeout(timeout_s):
                status, body = await conn.send(requests[i % len(requests)])
            t1 = time.perf_counter()
        except (OSError, TimeoutError) as exc:
            if counted:
                kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                out.errors += 1
                out.error_kinds[kind] = out.error_kinds.get(kind, 0) + 1
            if conn is not None and conn.transport is not None:
                conn.transport.close()
            conn = None
            await asyncio.sleep(0.01)
            continue
        i += 1
        out.answered += 1
        if counted and t0 >= warm_until:
            out.latencies_s.append(t1 - t0)
            out.statuses[status] = out.statuses.get(status, 0) + 1
            out.body_bytes += body
            if not 200 <= status < 300:
                out.errors += 1
                out.error_kinds[f"http {status}"] = out.error_kinds.get(f"http {status}", 0) + 1
    if conn is not None and conn.transport is not None:
        conn.transport.close()


async def _run(host, port, requests, clients, warmup_s, seconds, timeout_s) -> LoadResult:
    out = LoadResult(clients=clients, seconds=seconds)
    begin = time.perf_counter()
    warm_until, stop_at = begin + warmup_s, begin + warmup_s + seconds
    await asyncio.gather(
        *(
            _client(host, port, requests, c, warm_until, stop_at, timeout_s, out)
            for c in range(clients)
        )
    )
    out.seconds = time.perf_counter() - warm_until  # answers in flight at the end count
    return out


def run_load(
    host: str,
    port: int,
    requests: list[bytes],
    *,
    clients: int,
    seconds: float,
    warmup_s: float = 1.0,
    timeout_s: float = 10.0,
) -> LoadResult:
    """Drive ``clients`` closed-loop clients for ``warmup_s`` + ``seconds``; client ``c``
    sends ``requests[c]``, ``requests[c + 1]`` … in turn (cycling)."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.run
    return runner(_run(host, port, requests, clients, warmup_s, seconds, timeout_s))

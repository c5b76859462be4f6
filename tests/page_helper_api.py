"""A department API that pages as the PageHelper framework does, served for real over HTTP:
``GET <path>?pageNum=0&pageSize=N[&gxsj=<cursor>]`` with a bearer token, answered
``{"code": 200, "msg": "成功", "data": {"total": T, "list": [...]}}`` (HTTP 200 with code
401 inside for a wrong token). The server gives at most ``cap`` records a page, whatever is
asked, as real servers cap it; records newer than the cursor are those whose
``update_time`` is later."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@dataclass
class PageHelperApi:
    records: list[dict]
    token: str
    cap: int = 3
    token_header: str | None = None  # the token as it is in this header, not as a bearer's
    url: str = ""
    asked: list[dict] = field(default_factory=list)  # each request's parameters, in order
    methods: list[str] = field(default_factory=list)

    def answer(self, query: dict[str, str], headers: dict[str, str]) -> dict:
        self.asked.append(query)
        given = headers.get(self.token_header or "Authorization")
        if given != (self.token if self.token_header else f"Bearer {self.token}"):
            return {"code": 401, "msg": "令牌无效", "data": None}
        since = query.get("gxsj")
        rows = [r for r in self.records if since is None or r["update_time"] > since]
        size = min(int(query["pageSize"]), self.cap)
        start = int(query["pageNum"]) * size
        return {"code": 200, "msg": "成功",
                "data": {"total": len(rows), "list": rows[start : start + size]}}  # fmt: skip


Answer = tuple[int, str, bytes]  # HTTP status, content type, body


@contextlib.contextmanager
def http_server(respond: Callable[[str, str, dict[str, str], bytes], Answer]) -> Iterator[str]:
    """A local HTTP server for the block, its URL given: each GET or POST answered by
    ``respond(method, path with query, headers, body)``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer("GET", b"")

        def do_POST(self) -> None:
            self._answer("POST", self.rfile.read(int(self.headers.get("Content-Length", 0))))

        def _answer(self, method: str, sent: bytes) -> None:
            status, content_type, body = respond(method, self.path, dict(self.headers), sent)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def served(api: PageHelperApi) -> Iterator[PageHelperApi]:
    """``api`` served on a free local port (its ``url`` set) for the block."""

    def respond(method: str, path: str, headers: dict[str, str], sent: bytes) -> Answer:
        api.methods.append(method)
        if method == "POST":  # the parameters in a JSON body
            query = {k: str(v) for k, v in json.loads(sent).items()}
        else:
            query = {k: v[0] for k, v in parse_qs(urlparse(path).query).items()}
        body = json.dumps(api.answer(query, headers), ensure_ascii=False)
        return 200, "application/json; charset=utf-8", body.encode()

    with http_server(respond) as url:
        api.url = url
        yield api

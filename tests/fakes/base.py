"""Base of the vendor fakes: a threaded HTTP server on 127.0.0.1 with routes, auth and switchable faults."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

Fault = Literal["5xx", "429", "slow", "drop"]


@dataclass
class Request:
    """One request as a route handler sees it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route pattern

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    """What a route handler returns."""

    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


Handler = Callable[[Request], Response]


class FakeServer:
    """A stateful fake of a vendor API. Subclasses register routes in `routes()` and keep state under `self.lock`.

    Faults: `inject_fault(kind, count)` makes the next `count` requests fail: "5xx" (503 with the vendor's error
    body), "429" (with Retry-After), "slow" (`slow_s` delay, then the normal answer), "drop" (connection closed
    with no answer). `requests` keeps (method, path) of every request for assertions.
    """

    retry_after_s: float = 1.0
    slow_s: float = 2.0

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._faults: deque[Fault] = deque()
        self.requests: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.routes()

    # -- to override -------------------------------------------------------------------------------------------
    def routes(self) -> None:
        """Register the vendor's routes with `self.route(...)`."""

    def authorize(self, req: Request) -> Response | None:
        """Return an error response when the request's credentials are refused, else None."""
        return None

    def error_body(self, status: int, message: str) -> Any:
        """The vendor's error body shape for `status`."""
        return {"error": {"code": str(status), "message": message}}

    # -- plumbing ----------------------------------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Register `handler` for `method` and a path regex (named groups become `req.params`)."""
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def inject_fault(self, fault: Fault, count: int = 1) -> None:
        with self.lock:
            self._faults.extend([fault] * count)

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, port: int = 0) -> FakeServer:
        """Serve on 127.0.0.1:`port` (0: a free one) in a daemon thread."""
        fake = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                fake._dispatch(self)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", port), _H)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _next_fault(self) -> Fault | None:
        with self.lock:
            return self._faults.popleft() if self._faults else None

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        req = Request(
            method=h.command,
            path=split.path,
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in h.headers.items()},
            body=body,
        )
        with self.lock:
            self.requests.append((req.method, req.path))
        fault = self._next_fault()
        if fault == "drop":
            h.close_connection = True
            h.connection.close()
            return
        if fault == "slow":
            time.sleep(self.slow_s)
        if fault == "5xx":
            return self._send(h, Response(503, self.error_body(503, "service unavailable (injected)")))
        if fault == "429":
            resp = Response(429, self.error_body(429, "rate limited (injected)"))
            resp.headers["Retry-After"] = str(int(self.retry_after_s))
            return self._send(h, resp)
        denied = self.authorize(req)
        if denied is not None:
            return self._send(h, denied)
        for method, pattern, handler in self._routes:
            m = pattern.match(req.path)
            if m and method == req.method:
                req.params = m.groupdict()
                try:
                    resp = handler(req)
                except Exception as exc:  # a bug in the fake: answer 500 with the reason, as a vendor would
                    resp = Response(500, self.error_body(500, f"fake error: {exc!r}"))
                return self._send(h, resp)
        self._send(h, Response(404, self.error_body(404, f"no route for {req.method} {req.path}")))

    def _send(self, h: BaseHTTPRequestHandler, resp: Response) -> None:
        if isinstance(resp.body, bytes):
            payload = resp.body
        elif resp.body is None:
            payload = b""
        else:
            payload = json.dumps(resp.body).encode()
        h.send_response(resp.status)
        h.send_header("Content-Type", resp.content_type)
        h.send_header("Content-Length", str(len(payload)))
        for k, v in resp.headers.items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(payload)


def bearer_auth(req: Request, token: str) -> bool:
    """True when the request carries `Authorization: Bearer <token>`."""
    return req.headers.get("authorization", "") == f"Bearer {token}"

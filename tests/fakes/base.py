"""Base of the vendor fakes: a threaded HTTP server on 127.0.0.1 with routes, auth and switchable faults."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

Fault = Literal["5xx", "429", "slow", "drop", "lost", "late"]
FAULTS: tuple[Fault, ...] = ("5xx", "429", "slow", "drop", "lost", "late")


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
    with no answer, nothing done), "lost" (the vendor acts, then the connection closes: the answer is lost) and
    "late" (the vendor acts only after `late_s`, when a client with a shorter timeout has given up: a timeout
    that acts late). `creates_only=True` aims them at the calls `is_create` names; `set_fault_rate(rate, kinds)`
    gives every request that probability of a fault drawn from `kinds` (seeded). `settle()` waits for late
    requests still in flight. `requests` keeps (method, path) of every request; `faults_served` counts faults.
    """

    retry_after_s: float = 1.0
    slow_s: float = 2.0
    late_s: float = 2.0

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._faults: list[tuple[Fault, bool]] = []  # (fault, creates only)
        self._rate: tuple[float, tuple[Fault, ...], random.Random] | None = None
        self._late = 0  # late requests not yet acted on
        self.faults_served: Counter[str] = Counter()
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

    def is_create(self, req: Request) -> bool:
        """True for the calls that change the vendor's state (what `creates_only` faults aim at)."""
        return req.method in ("POST", "PUT", "PATCH")

    # -- plumbing ----------------------------------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Register `handler` for `method` and a path regex (named groups become `req.params`)."""
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def inject_fault(self, fault: Fault, count: int = 1, *, creates_only: bool = False) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r} (one of {', '.join(FAULTS)})")
        with self.lock:
            self._faults.extend([(fault, creates_only)] * count)

    def set_fault_rate(self, rate: float, kinds: Sequence[Fault] = FAULTS, seed: int = 0) -> None:
        """Give every request (after the queued faults) probability `rate` of a fault drawn from `kinds`."""
        if not 0.0 <= rate <= 1.0 or any(k not in FAULTS for k in kinds) or (rate and not kinds):
            raise ValueError(f"rate must be in [0, 1] and kinds among {', '.join(FAULTS)}")
        with self.lock:
            self._rate = (rate, tuple(kinds), random.Random(seed)) if rate else None

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until no late request is still to act (True), or `timeout` seconds (False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if not self._late:
                    return True
            time.sleep(0.02)
        return False

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

    def _next_fault(self, req: Request) -> Fault | None:
        with self.lock:
            create = self.is_create(req)
            for i, (fault, creates_only) in enumerate(self._faults):
                if create or not creates_only:
                    del self._faults[i]
                    return fault
            if self._rate is not None:
                rate, kinds, rng = self._rate
                if rng.random() < rate:
                    return rng.choice(kinds)
            return None

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
        fault = self._next_fault(req)
        if fault is not None:
            with self.lock:
                self.faults_served[fault] += 1
        if fault == "drop":
            h.close_connection = True
            h.connection.close()
            return
        if fault == "slow":
            time.sleep(self.slow_s)
        if fault == "late":
            with self.lock:
                self._late += 1
            try:
                time.sleep(self.late_s)
                self._answer(h, req)
            finally:
                with self.lock:
                    self._late -= 1
            return
        if fault == "lost":
            self._answer(h, req, lose=True)
            return
        if fault == "5xx":
            return self._send(h, Response(503, self.error_body(503, "service unavailable (injected)")))
        if fault == "429":
            resp = Response(429, self.error_body(429, "rate limited (injected)"))
            resp.headers["Retry-After"] = str(int(self.retry_after_s))
            return self._send(h, resp)
        self._answer(h, req)

    def _handle(self, req: Request) -> Response:
        denied = self.authorize(req)
        if denied is not None:
            return denied
        for method, pattern, handler in self._routes:
            m = pattern.match(req.path)
            if m and method == req.method:
                req.params = m.groupdict()
                try:
                    return handler(req)
                except Exception as exc:  # a bug in the fake: answer 500 with the reason, as a vendor would
                    return Response(500, self.error_body(500, f"fake error: {exc!r}"))
        return Response(404, self.error_body(404, f"no route for {req.method} {req.path}"))

    def _answer(self, h: BaseHTTPRequestHandler, req: Request, *, lose: bool = False) -> None:
        """Act on `req`; send the answer, or (`lose`) close the connection instead of answering."""
        resp = self._handle(req)
        if lose:
            h.close_connection = True
            h.connection.close()
            return
        try:
            self._send(h, resp)
        except OSError:  # the client gave up (a late answer): the vendor acted all the same
            h.close_connection = True

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

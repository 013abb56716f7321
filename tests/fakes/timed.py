"""Shared base of the PaaS fakes: bearer auth, deployments that move through states over time, lost answers."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tests.fakes.base import FakeServer, Handler, Request, Response, bearer_auth


def stage(created: float, now: float, step_s: float, steps: Sequence[str], ok: str, failed: str,
          fails: bool, fail_at: int | None = None) -> str:
    """The state of a deployment `now`: each of `steps` lasts `step_s`, then `ok` (or `failed` from `fail_at`)."""
    index = int((now - created) / step_s) if step_s > 0 else len(steps)
    if fails and index >= (len(steps) if fail_at is None else fail_at):
        return failed
    return steps[index] if index < len(steps) else ok


def iso(ts: float) -> str:
    """A wall-clock RFC 3339 timestamp (UTC, Z) for a `time.time()` value."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TimedFake(FakeServer):
    """A FakeServer whose state advances with time before every request.

    Subclasses implement `advance(now)` (move deployments to their state at `now`, apply what finishing does:
    aliases, replaced deployments) and `deny()` (the vendor's exact answer to a refused token).
    `fail_shas` makes deployments of those SHAs end in the vendor's failure state; `end_states` (SHA -> a state
    the vendor documents) makes them end in that state instead (a crash, a block, a skip ...), and `hold_states`
    (SHA -> state) keeps them in a waiting state for good (approval, queue). `lose_answers(n)` makes the
    next `n` create calls act at the vendor and then answer 503, as when an answer is lost on the way back.
    """

    def __init__(self, token: str, step_s: float = 0.2) -> None:
        self.token = token
        self.step_s = step_s
        self.fail_shas: set[str] = set()
        self.end_states: dict[str, str] = {}
        self.hold_states: dict[str, str] = {}
        self._lost = 0
        self._ids = itertools.count(1)
        super().__init__()

    # -- to override -------------------------------------------------------------------------------------------
    def advance(self, now: float) -> None:
        """Bring every deployment to its state at `now` (called under `self.lock`)."""

    def deny(self) -> Response:
        return Response(401, self.error_body(401, "unauthorized"))

    def is_create(self, req: Request) -> bool:
        """True for the calls that create a deployment (the ones `lose_answers` affects)."""
        return req.method in ("POST", "PUT")

    # -- helpers -----------------------------------------------------------------------------------------------
    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}{secrets.token_hex(6)}"

    def lose_answers(self, count: int = 1) -> None:
        with self.lock:
            self._lost += count

    def authorize(self, req: Request) -> Response | None:
        return None if bearer_auth(req, self.token) else self.deny()

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        def timed(req: Request) -> Response:
            with self.lock:
                self.advance(time.time())
                resp = handler(req)
                if self._lost and resp.status < 300 and self.is_create(req):
                    self._lost -= 1
                    return Response(503, self.error_body(503, "upstream connect error (answer lost, injected)"))
                return resp

        super().route(method, pattern, timed)

    @staticmethod
    def json(body: Any, status: int = 200) -> Response:
        return Response(status, body)

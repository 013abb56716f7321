"""Load-smoke child process: locust as a library (gevent), a JSON plan on stdin, JSON figures on stdout.

Run as ``python -m providers.checks.perf.runner`` by providers/checks/perf/check.py, never imported by the orchestrator:
locust monkeypatches the standard library with gevent on import. The plan::

    {"base_url": "http://127.0.0.1:8101", "users": 5, "spawn_rate": 5, "duration_s": 3, "wait_s": 0.05,
     "timeout_s": 10, "endpoints": [{"name": "GET /status", "method": "GET", "path": "/status",
                                     "json_body": null, "expect_status": [200]}]}

Every simulated user walks the endpoints in order, again and again, until `duration_s` is over; each response is
timed by locust's `request` event with its exact duration (locust's own statistics round to 2 significant digits).
The answer: per endpoint the request count, failures, exact p50/p95/p99/max in ms and requests per second, plus
the first failure messages. Bounded: users, duration and a per-request timeout; no other address than the plan's.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import defaultdict
from typing import Any

from locust import FastHttpUser, constant, task  # importing locust monkeypatches the standard library (gevent)
from locust.env import Environment

MAX_ERRORS = 10


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile of `samples` (q in 0..1); 0.0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def make_user(plan: dict[str, Any]) -> type[FastHttpUser]:
    """A FastHttpUser class that cycles through the plan's endpoints, judging each status by `expect_status`."""
    endpoints: list[dict[str, Any]] = plan["endpoints"]

    class SmokeUser(FastHttpUser):
        host = plan["base_url"]
        wait_time = constant(float(plan.get("wait_s", 0.0)))
        network_timeout = float(plan.get("timeout_s", 10.0))
        connection_timeout = float(plan.get("timeout_s", 10.0))

        @task
        def walk(self) -> None:
            for ep in endpoints:
                kwargs: dict[str, Any] = {"name": ep["name"], "catch_response": True}
                if ep.get("json_body") is not None:
                    kwargs["json"] = ep["json_body"]
                with self.client.request(ep["method"], ep["path"], **kwargs) as resp:
                    if resp.status_code in ep["expect_status"]:
                        resp.success()
                    else:
                        resp.failure(f"status {resp.status_code}, expected {ep['expect_status']}")

    return SmokeUser


def run(plan: dict[str, Any]) -> dict[str, Any]:
    """Run the plan once; return the figures (see the module docstring)."""
    env = Environment(user_classes=[make_user(plan)], host=plan["base_url"])
    times: dict[str, list[float]] = defaultdict(list)
    failures: dict[str, int] = defaultdict(int)
    errors: list[str] = []

    def on_request(name: str, response_time: float, exception: BaseException | None, **_: Any) -> None:
        times[name].append(float(response_time))
        if exception is not None:
            failures[name] += 1
            if len(errors) < MAX_ERRORS:
                errors.append(f"{name}: {type(exception).__name__}: {str(exception)[:200]}")

    env.events.request.add_listener(on_request)  # type: ignore[no-untyped-call]
    runner = env.create_local_runner()
    start = time.monotonic()
    runner.start(int(plan["users"]), spawn_rate=float(plan["spawn_rate"]))
    time.sleep(float(plan["duration_s"]))  # gevent's sleep since the monkeypatch: the users run meanwhile
    runner.quit()
    elapsed = time.monotonic() - start
    out: dict[str, Any] = {}
    for ep in plan["endpoints"]:
        name = ep["name"]
        samples = times.get(name, [])
        out[name] = {
            "requests": len(samples),
            "failures": failures.get(name, 0),
            "error_rate": failures.get(name, 0) / len(samples) if samples else 0.0,
            "p50_ms": round(percentile(samples, 0.50), 2),
            "p95_ms": round(percentile(samples, 0.95), 2),
            "p99_ms": round(percentile(samples, 0.99), 2),
            "max_ms": round(max(samples), 2) if samples else 0.0,
            "rps": round(len(samples) / elapsed, 2) if elapsed > 0 else 0.0,
        }
    return {"duration_s": round(elapsed, 3), "users": int(plan["users"]), "endpoints": out, "errors": errors}


def main() -> int:
    plan = json.loads(sys.stdin.read())
    result = run(plan)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

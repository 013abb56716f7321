"""The fake cluster's network: ready pods really listen on podIP:containerPort, and a Service can be exposed.

Each ready pod that declares a containerPort gets an HTTP listener on its own loopback address (127.x.y.z, its
status.podIP), answering as the versioned sample app does: `{"status", "version", "pod"}` where version is the
image tag; `/health` answers 503 for images marked unhealthy (the release is up but broken, which only an
analysis can see). `expose(service)` opens a front (a LoadBalancer's address) that hands each new connection to
the next ready endpoint of the Service, round robin (kube-proxy's IPVS default `rr`): the split between stable and
canary pods is the endpoints' ratio, as in a real cluster. Pods declaring no port get no listener.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.kube_core import PodView


def answer(h: BaseHTTPRequestHandler, pod: PodView | None, unhealthy: set[str]) -> None:
    """What the app in `pod` answers to h's request (503 "no endpoints" when there is no pod to send it to)."""
    if pod is None:
        status, doc = 503, {"status": "no ready endpoints"}
    else:
        tag = pod.image.rsplit(":", 1)[-1]
        sick = pod.image in unhealthy and h.path.split("?")[0] == "/health"
        status, doc = (503 if sick else 200), {"status": "unhealthy" if sick else "ok", "version": tag,
                                               "pod": pod.name}
    body = json.dumps(doc).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def _serve(ip: str, port: int, handler: type[BaseHTTPRequestHandler]) -> _Server:
    server = _Server((ip, port), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


class PodNetwork:
    """Listeners of the ready pods (kept in step with the cluster by `sync`) and the exposed Services' fronts."""

    def __init__(self) -> None:
        self.unhealthy: set[str] = set()  # images whose /health answers 503
        self._pods: dict[str, PodView] = {}  # ip -> pod
        self._servers: dict[str, _Server] = {}  # ip -> its listener
        self._fronts: list[_Server] = []

    def sync(self, pods: list[PodView]) -> None:
        """Open a listener for each new ready pod with a port; close those of pods gone or no longer ready."""
        live = {p.ip: p for p in pods if p.ready and p.port is not None}
        for ip in [ip for ip in self._servers if ip not in live or live[ip].name != self._pods[ip].name]:
            server = self._servers.pop(ip)
            self._pods.pop(ip, None)
            threading.Thread(target=_close, args=(server,), daemon=True).start()
        for ip, pod in live.items():
            self._pods[ip] = pod
            if ip not in self._servers:
                assert pod.port is not None
                self._servers[ip] = _serve(ip, pod.port, self._pod_handler(ip))

    def _pod_handler(self, ip: str) -> type[BaseHTTPRequestHandler]:
        net = self

        class _Pod(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                answer(self, net._pods.get(ip), net.unhealthy)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return _Pod

    def expose(self, endpoints: Callable[[], list[PodView]]) -> str:
        """A front for a Service: each new connection goes to the next of `endpoints()` (its ready pods)."""
        net = self
        turn = [0]
        lock = threading.Lock()

        class _Front(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            pod: PodView | None = None

            def setup(self) -> None:
                super().setup()
                ready = endpoints()
                with lock:
                    self.pod = ready[turn[0] % len(ready)] if ready else None
                    turn[0] += 1

            def do_GET(self) -> None:
                answer(self, self.pod, net.unhealthy)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = _serve("127.0.0.1", 0, _Front)
        self._fronts.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def close(self) -> None:
        for server in [*self._servers.values(), *self._fronts]:
            _close(server)
        self._servers.clear()
        self._pods.clear()
        self._fronts.clear()


def _close(server: _Server) -> None:
    server.shutdown()
    server.server_close()

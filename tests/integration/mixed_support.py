"""The mixed environment (web on Vercel, api and agents on GKE, search on Render): its names, spec and /health."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.fakes.gke import FakeGkeServer
from tests.fakes.kubernetes import FakeKubeApiServer
from tests.fakes.render import RenderFake
from tests.fakes.vercel import VercelFake

ENV = "staging"
PROJECT, LOCATION, CLUSTER, NAMESPACE = "aevon-staging", "europe-west1", "aevon-backend", "aevon"
TEAM, VERCEL_PROJECT, RENDER_SERVICE = "team_aevon", "aevon-web", "srv-aevonsearch"
REGISTRY = "europe-west1-docker.pkg.dev/aevon-staging/backend"
DEPLOYMENTS = {"api": "api", "agents": "agent-workers"}  # GKE service -> its Deployment
INITIAL = "0" * 39 + "1"  # the image tag the GKE Deployments run before the first deploy of this suite


class HealthServer:
    """The api's /health as the test controls it: 503 while the api Deployment runs a SHA in `bad`, else 200."""

    def __init__(self, kube: FakeKubeApiServer) -> None:
        self.kube = kube
        self.bad: set[str] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                image = outer.kube.deployment("api", NAMESPACE)["spec"]["template"]["spec"]["containers"][0]["image"]
                sha = image.rpartition(":")[2]
                bad = sha in outer.bad
                body = json.dumps({"status": "degraded" if bad else "ok", "sha": sha}).encode()
                self.send_response(503 if bad else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def gke_service(name: str, vendors_gke: FakeGkeServer, depends_on: list[str]) -> dict[str, Any]:
    return {"name": name, "provider": "gke", "depends_on": depends_on, "secrets": {"token": "GKE_TOKEN"},
            "ready_timeout_s": 60, "settings": {
                "project": PROJECT, "location": LOCATION, "cluster": CLUSTER, "gke_api_url": vendors_gke.url,
                "namespace": NAMESPACE, "deployment": DEPLOYMENTS[name], "repository": f"{REGISTRY}/{name}",
                "zero_downtime": "refuse", "poll_interval_s": 0.05, "api_backoff_s": 0.05}}


def mixed_spec(repo: Path, vercel: VercelFake, render: RenderFake, gke: FakeGkeServer,
               health_url: str) -> dict[str, Any]:
    """deployments/staging.yaml's shape (api and agents on GKE, web on Vercel) plus `search` on Render."""
    fast = {"poll_interval_s": 0.1, "backoff_s": 0.05, "max_wait_s": 2.0}
    return {
        "source": {"repo": str(repo)},
        "services": [
            gke_service("api", gke, []),
            gke_service("agents", gke, ["api"]),
            {"name": "search", "provider": "render", "secrets": {"token": "RENDER_API_KEY"}, "ready_timeout_s": 60,
             "settings": {"api_url": f"{render.url}/v1", "service_id": RENDER_SERVICE, **fast}},
            {"name": "web", "provider": "vercel", "depends_on": ["api", "agents", "search"],
             "secrets": {"token": "VERCEL_TOKEN"}, "ready_timeout_s": 60,
             "settings": {"api_url": vercel.url, "project": VERCEL_PROJECT, "team_id": TEAM, "repo": "aevon/aevon-os",
                          "target": "production", **fast}},
        ],
        "validation": {"checks": [
            {"name": "api-health", "kind": "health", "service": "api", "error_retries": 0,
             "settings": {"url": health_url, "endpoints": [{"path": "/health", "json_field": "status",
                                                           "json_value": "ok"}]}},
        ]},
    }

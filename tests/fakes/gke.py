"""A fake GKE API: `projects.locations.clusters.get` returning the endpoint and CA of a fake kube-apiserver.

Follows the GKE REST reference, https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/
projects.locations.clusters/get (and the zonal alias projects.zones.clusters.get): `GET /v1/{name=projects/*/
locations/*/clusters/*}` returns a Cluster with `endpoint` (an IP, here host:port of the fake control plane),
`masterAuth.clusterCaCertificate` (base64 PEM), `status` (RUNNING, PROVISIONING, ...), `location`, `selfLink`.
Errors are Google API error bodies: `{"error": {"code", "message", "status"}}` with status UNAUTHENTICATED,
PERMISSION_DENIED, NOT_FOUND, RESOURCE_EXHAUSTED, UNAVAILABLE. google-cloud-container talks to it over REST.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.fakes.base import FakeServer, Request, Response, bearer_auth

GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass
class FakeCluster:
    """One cluster the fake knows: where its control plane answers and the CA that signs it."""

    project: str
    location: str
    name: str
    endpoint: str
    ca_pem: str
    status: str = "RUNNING"
    version: str = "1.31.1-gke.1146000"


class FakeGkeServer(FakeServer):
    """GKE's cluster lookup. Accepts `Authorization: Bearer <token>` for `tokens`; others get 401, and a token
    in `no_access_tokens` gets 403 (authenticated, no container.clusters.get permission)."""

    def __init__(self, *, tokens: Iterable[str] = ("gcp-test-token",), no_access_tokens: Iterable[str] = ()) -> None:
        self.tokens = set(tokens)
        self.no_access_tokens = set(no_access_tokens)
        self.clusters: dict[str, FakeCluster] = {}
        super().__init__()

    def add_cluster(self, cluster: FakeCluster) -> str:
        """Register `cluster`; return its resource name."""
        name = f"projects/{cluster.project}/locations/{cluster.location}/clusters/{cluster.name}"
        with self.lock:
            self.clusters[name] = cluster
        return name

    def error_body(self, status: int, message: str) -> Any:
        return {"error": {"code": status, "message": message, "status": GOOGLE_STATUS.get(status, "UNKNOWN")}}

    def authorize(self, req: Request) -> Response | None:
        if any(bearer_auth(req, t) for t in self.tokens):
            return None
        if any(bearer_auth(req, t) for t in self.no_access_tokens):
            return Response(
                403,
                self.error_body(
                    403,
                    f'Required "container.clusters.get" permission(s) for "{req.path.removeprefix("/v1/")}".',
                ),
            )
        return Response(
            401,
            self.error_body(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential.",
            ),
        )

    def routes(self) -> None:
        self.route("GET", r"/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/clusters/(?P<c>[^/:]+)", self._get_cluster)
        self.route("GET", r"/v1/projects/(?P<p>[^/]+)/zones/(?P<l>[^/]+)/clusters/(?P<c>[^/:]+)", self._get_cluster)

    def _get_cluster(self, req: Request) -> Response:
        p, loc, c = req.params["p"], req.params["l"], req.params["c"]
        name = f"projects/{p}/locations/{loc}/clusters/{c}"
        with self.lock:
            cluster = self.clusters.get(name)
        if cluster is None:
            return Response(404, self.error_body(404, f"Not found: {name}."))
        ca_b64 = base64.b64encode(cluster.ca_pem.encode("ascii")).decode("ascii")
        body = {
            "name": cluster.name,
            "nodePools": [{"name": "default-pool", "status": "RUNNING", "initialNodeCount": 3}],
            "masterAuth": {"clusterCaCertificate": ca_b64},
            "loggingService": "logging.googleapis.com/kubernetes",
            "monitoringService": "monitoring.googleapis.com/kubernetes",
            "network": "default",
            "clusterIpv4Cidr": "10.96.0.0/14",
            "subnetwork": "default",
            "selfLink": f"https://container.googleapis.com/v1/{name}",
            "zone": cluster.location,
            "endpoint": cluster.endpoint,
            "initialClusterVersion": cluster.version,
            "currentMasterVersion": cluster.version,
            "currentNodeVersion": cluster.version,
            "createTime": "2025-01-06T10:00:00+00:00",
            "status": cluster.status,
            "location": cluster.location,
            "id": "8f1c2e9a5b3d4c6e8a7b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f",
        }
        return Response(200, body)

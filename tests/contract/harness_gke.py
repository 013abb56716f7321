"""Contract harness of the `gke` target: the fake GKE API points at the fake kube-apiserver (endpoint + CA)."""

from __future__ import annotations

from pathlib import Path

from providers.targets.base import ServiceTarget
from providers.targets.kubernetes.target import make_gke_target
from tests.contract.harness_kubernetes import KubeHarnessBase
from tests.fakes.gke import FakeCluster, FakeGkeServer

PROJECT = "aevon-staging"
LOCATION = "europe-west1"
CLUSTER = "backend"


class GkeHarness(KubeHarnessBase):
    """`gke`: the target reads the cluster with google-cloud-container, then talks to its control plane.

    One token is both the Google access token (GKE API) and the control plane's bearer token, as on GKE.
    """

    name = "gke"

    def __init__(self) -> None:
        super().__init__()
        self.gke: FakeGkeServer | None = None

    async def start(self, tmp: Path) -> None:
        await super().start(tmp)
        kube = self._fake()
        gke = FakeGkeServer(tokens=[self.secret])
        gke.start()
        self.gke = gke
        gke.add_cluster(FakeCluster(PROJECT, LOCATION, CLUSTER, endpoint=kube.endpoint, ca_pem=kube.ca_pem))

    async def stop(self) -> None:
        if self.gke is not None:
            self.gke.stop()
            self.gke = None
        await super().stop()

    def _make(self, service: str, token: str) -> ServiceTarget:
        assert self.gke is not None, "harness not started"
        self._ensure_deployment(service)
        settings = {
            **self.settings(service),
            "project": PROJECT,
            "location": LOCATION,
            "cluster": CLUSTER,
            "gke_api_url": self.gke.url,
        }
        return make_gke_target(self._context(service, "gke", token, settings))

    def make_target(self, service: str) -> ServiceTarget:
        return self._make(service, self.secret)

    def make_target_bad_token(self, service: str) -> ServiceTarget:
        return self._make(service, self.bad_secret)


HARNESS_FACTORY = GkeHarness

"""Contract harness of the `kubernetes` target: a kubeconfig pointing at the fake kube-apiserver (HTTPS + CA)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from deployments.spec import ServiceSpec
from providers.targets.base import ServiceTarget, TargetContext
from providers.targets.kubernetes.rollout import RELEASE_ANNOTATION
from providers.targets.kubernetes.target import make_target
from tests.contract.harness import Fault
from tests.fakes.kubernetes import FakeKubeApiServer

REPOSITORY = "europe-docker.pkg.dev/aevon/backend"
NAMESPACE = "aevon"


class KubeHarnessBase:
    """The fake kube-apiserver and the Deployments the contract suite works on (one per service)."""

    name = "kubernetes"

    def __init__(self) -> None:
        self.secret = f"kube-{secrets.token_hex(16)}"
        self.bad_secret = f"bad-{secrets.token_hex(16)}"
        self.kube: FakeKubeApiServer | None = None
        self.tmp: Path | None = None
        self._services: set[str] = set()
        self.overrides: dict[str, Any] = {}  # extra settings for the targets made from here on

    async def start(self, tmp: Path) -> None:
        self.tmp = tmp
        # A pod becomes ready 0.1 s after it starts; progressDeadlineSeconds 600 is scaled to 1.2 s.
        self.kube = FakeKubeApiServer(tokens=[self.secret], rollout_step_s=0.1, deadline_scale=0.002).start()
        self.kube.cannot_start(f"{REPOSITORY}:{self.failing_sha()}")

    async def stop(self) -> None:
        if self.kube is not None:
            self.kube.stop()
            self.kube = None

    def _fake(self) -> FakeKubeApiServer:
        assert self.kube is not None, "harness not started"
        return self.kube

    def _ensure_deployment(self, service: str) -> None:
        if service not in self._services:
            self._fake().create_deployment(
                service,
                f"{REPOSITORY}:{self.sha(0)}",
                namespace=NAMESPACE,
                replicas=2,
                strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            )
            self._services.add(service)

    def canary_setup(self, service: str, *, port: int, replicas: int = 4) -> str:
        """The service's Deployment with `replicas` pods listening on `port` (labels app + track=stable) and a
        Service `service` selecting `app: <service>` (stable and canary pods alike); returns the Service's front URL
        (its ready endpoints, round robin), which the targets made from here on report as the service's URL."""
        fake = self._fake()
        fake.create_deployment(
            service, f"{REPOSITORY}:{self.sha(0)}", namespace=NAMESPACE, replicas=replicas, port=port,
            pod_labels={"track": "stable"},
            strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        )
        self._services.add(service)
        fake.create_service(service, {"app": service}, target_port=port, namespace=NAMESPACE)
        url = fake.expose_service(service, NAMESPACE)
        self.overrides.update({"service": service, "url": url})
        return url

    def settings(self, service: str) -> dict[str, Any]:
        return {
            "namespace": NAMESPACE,
            "deployment": service,
            "repository": REPOSITORY,
            "poll_interval_s": 0.05,
            "api_backoff_s": 0.05,
            "request_timeout_s": 10,
            **self.overrides,
        }

    def _context(self, service: str, provider: str, token: str, settings: dict[str, Any]) -> TargetContext:
        assert self.tmp is not None
        state = self.tmp / f"state-{service}"
        state.mkdir(parents=True, exist_ok=True)
        spec = ServiceSpec(name=service, provider=provider, settings=settings, secrets={"token": "KUBE_TOKEN"})
        return TargetContext(env="staging", spec=spec, secrets={"token": SecretStr(token)}, state_dir=state)

    def sha(self, n: int) -> str:
        return hashlib.sha1(f"kube-contract-{n}".encode()).hexdigest()

    def failing_sha(self) -> str:
        return hashlib.sha1(b"kube-contract-cannot-start").hexdigest()

    def vendor_deployment_count(self, service: str) -> int:
        """ReplicaSets holding a template we rolled out (one per distinct release: the rollouts we made)."""
        return sum(
            1
            for rs in self._fake().replica_sets(service, NAMESPACE)
            if RELEASE_ANNOTATION in (rs["spec"]["template"]["metadata"].get("annotations") or {})
        )

    def inject_fault(self, fault: Fault, count: int) -> None:
        self._fake().inject_fault(fault, count)

    def ambiguous_creates(self, fault: Fault, count: int) -> None:
        """The next `count` PATCHes end ambiguously: "lost" (applied, connection closed) or "late" (applied after
        the client's request timeout). Targets made from here on time out after 0.3 s."""
        self._fake().late_s = 1.0
        self.overrides["request_timeout_s"] = 0.3
        self._fake().inject_fault(fault, count, creates_only=True)

    def settle(self) -> None:
        """Wait until every late call the fake holds has acted."""
        assert self._fake().settle(), "late calls still in flight"

    def lose_create_answers(self, count: int) -> None:
        """The next `count` PATCHes are applied by the fake but their answers never arrive."""
        self._fake().lose_answers(count)


class KubernetesHarness(KubeHarnessBase):
    """`kubernetes` through a kubeconfig file (server, certificate-authority-data); the token comes as a secret."""

    name = "kubernetes"

    def _kubeconfig(self) -> Path:
        assert self.tmp is not None
        path = self.tmp / "kubeconfig.yaml"
        if not path.exists():
            fake = self._fake()
            config = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "fake",
                        "cluster": {
                            "server": fake.url,
                            "certificate-authority-data": base64.b64encode(fake.ca_pem.encode()).decode(),
                        },
                    }
                ],
                "users": [{"name": "deployer", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "deployer"}}],
                "current-context": "fake",
            }
            path.write_text(yaml.safe_dump(config))
        return path

    def _make(self, service: str, token: str) -> ServiceTarget:
        self._ensure_deployment(service)
        settings = {**self.settings(service), "kubeconfig": str(self._kubeconfig()), "context": "fake"}
        return make_target(self._context(service, "kubernetes", token, settings))

    def make_target(self, service: str) -> ServiceTarget:
        return self._make(service, self.secret)

    def make_target_bad_token(self, service: str) -> ServiceTarget:
        return self._make(service, self.bad_secret)


HARNESS_FACTORY = KubernetesHarness

"""Contract harness of the koyeb target against the Koyeb fake."""

from __future__ import annotations

from typing import Any

from providers.models import DeployStatus
from tests.contract.paas_harness import STEP_S, PaasHarness
from tests.fakes.koyeb import KoyebFake


class KoyebHarness(PaasHarness):
    """A git-backed Koyeb web service (created with a first, healthy deployment, as Koyeb does)."""

    name = "koyeb"

    def new_fake(self) -> KoyebFake:
        return KoyebFake(self.secret, step_s=STEP_S)

    def add_service(self, service: str) -> None:
        assert isinstance(self.fake, KoyebFake)
        self.fake.add_service(f"svc-{service}", service, "github.com/aevon/os", self.sha(0))

    def settings(self, service: str) -> dict[str, Any]:
        return {"api_url": self.fake.url, "service_id": f"svc-{service}"}

    def vendor_deployment_count(self, service: str) -> int:
        assert isinstance(self.fake, KoyebFake)
        return self.fake.count(f"svc-{service}")

    def documented_outcomes(self) -> dict[str, tuple[str, DeployStatus]]:
        """DeploymentStatus values koyeb-cli's `--wait` ends on as failures (pkg/koyeb/services_update.go)."""
        out = {"ERROR": (self.failing_sha(), DeployStatus.FAILED)}
        for state in ("DEGRADED", "UNHEALTHY"):
            out[state] = (self.state_sha(state), DeployStatus.FAILED)
        return out


HARNESS_FACTORY = KoyebHarness

"""Contract harness of the render target against the Render fake."""

from __future__ import annotations

from typing import Any

from providers.models import DeployStatus
from tests.contract.paas_harness import STEP_S, PaasHarness
from tests.fakes.render import RenderFake


def service_id(service: str) -> str:
    return "srv-" + "".join(c for c in service if c.isalnum())


class RenderHarness(PaasHarness):
    """A git-backed Render web service."""

    name = "render"

    def new_fake(self) -> RenderFake:
        return RenderFake(self.secret, step_s=STEP_S)

    def add_service(self, service: str) -> None:
        assert isinstance(self.fake, RenderFake)
        self.fake.add_service(service_id(service))

    def settings(self, service: str) -> dict[str, Any]:
        return {"api_url": f"{self.fake.url}/v1", "service_id": service_id(service)}

    def vendor_deployment_count(self, service: str) -> int:
        assert isinstance(self.fake, RenderFake)
        return self.fake.count(service_id(service))

    def documented_outcomes(self) -> dict[str, tuple[str, DeployStatus]]:
        """Deploy statuses that end a deploy without it going live (/reference/retrieve-deploy)."""
        out = {"build_failed": (self.failing_sha(), DeployStatus.FAILED)}
        for state in ("update_failed", "pre_deploy_failed"):
            out[state] = (self.state_sha(state), DeployStatus.FAILED)
        out["canceled"] = (self.state_sha("canceled"), DeployStatus.CANCELED)
        return out


HARNESS_FACTORY = RenderHarness

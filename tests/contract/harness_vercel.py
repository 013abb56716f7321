"""Contract harness of the vercel target against the Vercel fake."""

from __future__ import annotations

from typing import Any

from providers.models import DeployStatus
from tests.contract.paas_harness import STEP_S, PaasHarness
from tests.fakes.vercel import VercelFake

TEAM = "team_aevon"


class VercelHarness(PaasHarness):
    """Production deployments of a team project, from a GitHub org/repo."""

    name = "vercel"

    def new_fake(self) -> VercelFake:
        return VercelFake(self.secret, step_s=STEP_S, team_id=TEAM)

    def add_service(self, service: str) -> None:
        assert isinstance(self.fake, VercelFake)
        self.fake.add_project(f"{service}-app")

    def settings(self, service: str) -> dict[str, Any]:
        return {"api_url": self.fake.url, "project": f"{service}-app", "team_id": TEAM, "repo": "aevon/os"}

    def vendor_deployment_count(self, service: str) -> int:
        assert isinstance(self.fake, VercelFake)
        return self.fake.count(f"{service}-app")

    def documented_outcomes(self) -> dict[str, tuple[str, DeployStatus]]:
        """readyState values that end a deployment other than READY (vercel/sdk getdeploymentresponsebodyreadystate)."""
        return {"BLOCKED": (self.state_sha("BLOCKED"), DeployStatus.FAILED),
                "ERROR": (self.failing_sha(), DeployStatus.FAILED)}


HARNESS_FACTORY = VercelHarness

"""Contract harness of the vercel target against the Vercel fake."""

from __future__ import annotations

from typing import Any

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


HARNESS_FACTORY = VercelHarness

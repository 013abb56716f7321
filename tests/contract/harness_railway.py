"""Contract harness of the railway target against the Railway GraphQL fake."""

from __future__ import annotations

from typing import Any

from providers.models import DeployStatus
from tests.contract.paas_harness import STEP_S, PaasHarness
from tests.fakes.railway import RailwayFake

ENV_ID = "env-production"


class RailwayHarness(PaasHarness):
    """A Railway service instance in the production environment, with a team token (Bearer)."""

    name = "railway"

    def new_fake(self) -> RailwayFake:
        return RailwayFake(self.secret, step_s=STEP_S)

    def add_service(self, service: str) -> None:
        assert isinstance(self.fake, RailwayFake)
        self.fake.add_service(f"svc-{service}", ENV_ID)

    def settings(self, service: str) -> dict[str, Any]:
        return {
            "api_url": f"{self.fake.url}/graphql/v2",
            "service_id": f"svc-{service}",
            "environment_id": ENV_ID,
            "token_kind": "team",
        }

    def vendor_deployment_count(self, service: str) -> int:
        assert isinstance(self.fake, RailwayFake)
        return self.fake.count(f"svc-{service}")

    def documented_outcomes(self) -> dict[str, tuple[str, DeployStatus]]:
        """DeploymentStatus values that end a deployment without it serving."""
        return {"FAILED": (self.failing_sha(), DeployStatus.FAILED),
                "CRASHED": (self.state_sha("CRASHED"), DeployStatus.FAILED),
                "SKIPPED": (self.state_sha("SKIPPED"), DeployStatus.CANCELED)}

    def documented_waits(self) -> dict[str, str]:
        """DeploymentStatus values a deployment can stay in until someone acts."""
        return {state: self.state_sha(state, hold=True) for state in ("WAITING", "NEEDS_APPROVAL")}


HARNESS_FACTORY = RailwayHarness

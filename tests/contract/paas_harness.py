"""The harness shared by the PaaS targets' contract runs: a vendor fake on 127.0.0.1 and targets wired to it."""

from __future__ import annotations

import hashlib
import secrets
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from deployments.spec import ServiceSpec
from providers.registry import TARGETS, resolve
from providers.targets.base import ServiceTarget, TargetContext
from tests.contract.harness import Fault
from tests.fakes.timed import TimedFake

STEP_S = 0.1  # how long each vendor state lasts in the fakes
FAST = {"poll_interval_s": 0.1, "backoff_s": 0.05, "max_wait_s": 2.0,
        "create_settle_s": 5.0}  # the fakes act late after 1 s at most: 5 s of looking covers it (60 s by default)


class PaasHarness(ABC):
    """A TargetHarness for one PaaS target: subclasses build the fake and the service's settings."""

    name: str

    def __init__(self) -> None:
        self.secret = f"tok_{secrets.token_hex(16)}"
        self.bad_secret = f"tok_{secrets.token_hex(16)}"
        self.tmp = Path(".")
        self._fake: TimedFake | None = None
        self._known: set[str] = set()
        self.overrides: dict[str, Any] = {}  # extra settings for the targets made from here on

    @property
    def fake(self) -> TimedFake:
        assert self._fake is not None, "harness not started"
        return self._fake

    @abstractmethod
    def new_fake(self) -> TimedFake:
        """The vendor fake, not started."""

    @abstractmethod
    def add_service(self, service: str) -> None:
        """Create the vendor-side resource (project, service) for `service` in the fake."""

    @abstractmethod
    def settings(self, service: str) -> dict[str, Any]:
        """`services.<service>.settings` pointing at the fake."""

    @abstractmethod
    def vendor_deployment_count(self, service: str) -> int: ...

    async def start(self, tmp: Path) -> None:
        self.tmp = tmp
        fake = self.new_fake()
        fake.start()
        self._fake = fake

    async def stop(self) -> None:
        if self._fake is not None:
            self._fake.stop()

    def _target(self, service: str, token: str) -> ServiceTarget:
        if service not in self._known:
            self.add_service(service)
            self._known.add(service)
        settings = {**FAST, **self.settings(service), **self.overrides}
        spec = ServiceSpec(name=service, provider=self.name, settings=settings,
                           secrets={"token": f"{self.name.upper()}_TOKEN"})
        state = self.tmp / "state" / service
        state.mkdir(parents=True, exist_ok=True)
        ctx = TargetContext(env="staging", spec=spec, secrets={"token": SecretStr(token)}, state_dir=state)
        factory = resolve(TARGETS, "target", self.name, f"services.{service}.provider")
        target: ServiceTarget = factory(ctx)
        return target

    def make_target(self, service: str) -> ServiceTarget:
        return self._target(service, self.secret)

    def make_target_bad_token(self, service: str) -> ServiceTarget:
        return self._target(service, self.bad_secret)

    def sha(self, n: int) -> str:
        return hashlib.sha1(f"{self.name}-good-{n}".encode()).hexdigest()

    def failing_sha(self) -> str:
        sha = hashlib.sha1(f"{self.name}-failing".encode()).hexdigest()
        self.fake.fail_shas.add(sha)
        return sha

    def state_sha(self, state: str, *, hold: bool = False) -> str:
        """A SHA whose deployment the fake ends in (or, with `hold`, keeps in) the vendor state `state`."""
        sha = hashlib.sha1(f"{self.name}-state-{state}".encode()).hexdigest()
        (self.fake.hold_states if hold else self.fake.end_states)[sha] = state
        return sha

    def inject_fault(self, fault: Fault, count: int) -> None:
        self.fake.inject_fault(fault, count)

    def lose_create_answers(self, count: int) -> None:
        """The next `count` create calls act at the vendor but their answers are lost (503)."""
        self.fake.lose_answers(count)

    def ambiguous_creates(self, fault: Fault, count: int) -> None:
        """The next `count` create (and rollback) calls end ambiguously: "lost" (acted, connection closed) or
        "late" (acted after the client's request timeout). Targets made from here on time out after 0.3 s."""
        self.fake.late_s = 1.0
        self.overrides.update(request_timeout_s=0.3, create_settle_s=5.0)
        self.fake.inject_fault(fault, count, creates_only=True)

    def settle(self) -> None:
        """Wait until every late call the fake holds has acted."""
        assert self.fake.settle(), "late calls still in flight"

"""Contract-suite harness for the `local` target: a temporary git repo of versioned-app commits, real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from deployments.spec import ServiceSpec
from providers.source.git import GitSource
from providers.targets.base import TargetContext
from providers.targets.local.process import free_port
from providers.targets.local.state import StateStore
from providers.targets.local.target import LocalTarget, make_target, stop_all
from tests.contract.harness import Fault

APP = Path(__file__).resolve().parents[1] / "fakes" / "versioned_app.py"
GOOD_VERSIONS = tuple(f"v{n}" for n in range(10))  # sha(n) is the commit of version "v<n>"
COMMAND = ["{python}", "app.py", "--port", "{port}"]


def _git(repo: Path, *args: str) -> str:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(repo),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }
    out = subprocess.run(["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def build_app_repo(repo: Path, versions: list[tuple[str, str]]) -> dict[str, str]:
    """A git repo with one commit per (version, mode) of the versioned app; returns version -> SHA."""
    repo.mkdir(parents=True)
    _git(repo, "init", "--quiet", "--initial-branch=main")
    shas: dict[str, str] = {}
    for version, mode in versions:
        (repo / "app.py").write_text(APP.read_text())
        (repo / "VERSION").write_text(version + "\n")
        (repo / "MODE").write_text(mode + "\n")
        _git(repo, "add", "app.py", "VERSION", "MODE")
        _git(repo, "-c", "commit.gpgsign=false", "commit", "--quiet", "-m", f"{version} ({mode})")
        shas[version] = _git(repo, "rev-parse", "HEAD")
    return shas


class LocalHarness:
    """The local target under the contract suite: services run as real processes from a throwaway repo.

    `sha(n)` (n = 0..9) is the commit whose app answers version "v<n>"; `failing_sha()` is a commit whose app
    exits at start (after printing the DATABASE_URL secret, which the target must scrub).
    Not applicable here: `inject_fault` (the local target calls no vendor API: 5xx, 429, slow and dropped replies
    have no meaning; process-level failures are covered by `failing_sha`) and `make_target_bad_token` (no
    credentials) both skip the test that asks for them.
    """

    name = "local"
    secret = "pw-9f3c1e7a-local-contract"  # a test value

    def __init__(self, env: str = "dev") -> None:
        self.env = env
        self.tmp: Path | None = None
        self.versions: dict[str, str] = {}
        self.ports: dict[str, int] = {}

    async def start(self, tmp: Path) -> None:
        self.tmp = tmp
        plan = [(v, "ok") for v in GOOD_VERSIONS] + [("bad", "crash"), ("sick", "unhealthy"), ("mute", "no-listen")]
        self.versions = await asyncio.to_thread(build_app_repo, tmp / "app-repo", plan)
        (tmp / "state").mkdir()

    async def stop(self) -> None:
        for service in self.ports:
            await stop_all(self.state_dir, service, grace=3)

    @property
    def state_dir(self) -> Path:
        assert self.tmp is not None, "start() first"
        return self.tmp / "state"

    def context(self, service: str, **settings: object) -> TargetContext:
        """The target context of `service`; `settings` override the defaults (command, stable port ...)."""
        assert self.tmp is not None, "start() first"
        port = self.ports.setdefault(service, free_port(self.ports.values()))
        merged: dict[str, object] = {"command": COMMAND, "port": port, "startup_timeout_s": 20, "stop_grace_s": 3}
        merged.update(settings)
        spec = ServiceSpec(name=service, provider="local", settings=merged, secrets={"DATABASE_URL": "DATABASE_URL"})
        return TargetContext(
            env=self.env,
            spec=spec,
            state_dir=self.state_dir,
            secrets={"DATABASE_URL": SecretStr(f"postgresql://app:{self.secret}@127.0.0.1:5432/app")},
            source=GitSource(str(self.tmp / "app-repo"), self.tmp / "checkouts"),
        )

    def make_target(self, service: str) -> LocalTarget:
        return make_target(self.context(service))

    def make_target_bad_token(self, service: str) -> LocalTarget:
        pytest.skip("the local target takes no credentials: there is no token to refuse")

    def sha(self, n: int) -> str:
        return self.versions[f"v{n}"]

    def failing_sha(self) -> str:
        return self.versions["bad"]

    def vendor_deployment_count(self, service: str) -> int:
        return len(StateStore(self.state_dir / f"local-{service}", service).load().instances)

    def inject_fault(self, fault: Fault, count: int) -> None:
        pytest.skip(f"fault {fault!r} does not apply to the local target: it calls no vendor API")


HARNESS_FACTORY = LocalHarness

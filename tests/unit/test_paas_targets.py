"""Vendor-specific behaviour of the vercel, render, railway and koyeb targets, against their fakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from deployments.spec import ServiceSpec
from providers.errors import ConfigError, PermanentError, SecretMissing
from providers.models import DeployStatus
from providers.registry import TARGETS, resolve
from providers.targets.base import TargetContext
from providers.targets.paas import koyeb, railway, render, vercel
from providers.targets.paas.base import RELEASE_KEY, PaasTarget
from tests.contract.harness import make_release
from tests.contract.harness_koyeb import KoyebHarness
from tests.contract.harness_railway import RailwayHarness
from tests.contract.harness_render import RenderHarness
from tests.contract.harness_vercel import VercelHarness
from tests.contract.paas_harness import PaasHarness
from tests.fakes.koyeb import KoyebFake
from tests.fakes.railway import SCHEMA, RailwayFake
from tests.fakes.vercel import VercelFake

GOOD = {
    "vercel": {"project": "web-app", "repo": "aevon/os"},
    "render": {"service_id": "srv-web"},
    "railway": {"service_id": "svc-web", "environment_id": "env-production"},
    "koyeb": {"service_id": "svc-web"},
}


def context(provider: str, settings: dict[str, Any], tmp: Path, token: str | None = "tok_x", **kw: Any) -> Any:
    spec = ServiceSpec(name="web", provider=provider, settings=settings, secrets={"token": "TOKEN"})
    secrets = {"token": SecretStr(token)} if token is not None else {}
    return TargetContext(env="staging", spec=spec, secrets=secrets, state_dir=tmp, **kw)


def build(provider: str, settings: dict[str, Any], tmp: Path, **kw: Any) -> PaasTarget:
    target: PaasTarget = resolve(TARGETS, "target", provider, "services.web.provider")(context(provider, settings, tmp,
                                                                                               **kw))
    return target


async def first_deploy(cls: type[PaasHarness], tmp: Path) -> tuple[PaasHarness, Any, Any, Any]:
    """A started harness, a target of service `web`, and the handle of its first deploy (of sha(1))."""
    harness = cls()
    await harness.start(tmp)
    target = harness.make_target("web")
    release = make_release("staging", harness.sha(1))
    return harness, target, release, await target.deploy(release)


@pytest.mark.parametrize(
    ("provider", "settings", "field"),
    [
        ("vercel", {"repo": "aevon/os"}, "project"),
        ("vercel", {"project": "p", "repo": "aevon/os", "repo_id": "1"}, ""),
        ("vercel", {"project": "p", "repo": "not a repo"}, ""),
        ("vercel", {"project": "p", "repo": "a/b", "target": "staging"}, "target"),
        ("render", {"service_id": "web"}, "service_id"),
        ("render", {"service_id": "srv-a", "image_url": "ghcr.io/a/b:latest"}, "image_url"),
        ("railway", {"service_id": "s"}, "environment_id"),
        ("railway", {**GOOD["railway"], "token_kind": "personal"}, "token_kind"),
        ("koyeb", {"service_id": "s", "image": "docker.io/a/b"}, "image"),
        ("koyeb", {"service_id": "s", "poll_interval_s": 0}, "poll_interval_s"),
        ("koyeb", {"service_id": "s", "api_url": "ftp://example.com"}, "api_url"),
        ("render", {"service_id": "srv-a", "colour": "blue"}, "colour"),
    ],
)
def test_bad_setting_names_its_field(provider: str, settings: dict[str, Any], field: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        build(provider, settings, tmp_path)
    location = "services.web.settings" + (f".{field}" if field else "")
    assert caught.value.location == location


@pytest.mark.parametrize("provider", sorted(GOOD))
def test_missing_token_is_a_secret_missing(provider: str, tmp_path: Path) -> None:
    with pytest.raises(SecretMissing) as caught:
        build(provider, GOOD[provider], tmp_path, token=None)
    assert caught.value.location == "services.web.secrets.token"


@pytest.mark.parametrize("provider", sorted(GOOD))
async def test_injected_client_is_used_and_left_open(provider: str, tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"message": "nothing here"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    target = build(provider, GOOD[provider], tmp_path, extra={"http_client": client})
    with pytest.raises(PermanentError) as caught:
        await target.current()
    assert caught.value.provider == provider and seen
    assert len(seen) == 1  # a 404 is permanent: never retried
    await target.aclose()
    assert not client.is_closed
    await client.aclose()


def test_every_documented_status_is_mapped() -> None:
    railway_enum = set(SCHEMA.type_map["DeploymentStatus"].values)  # type: ignore[attr-defined]
    assert set(railway.STATUSES) == railway_enum
    # vercel/sdk docs/models/getdeploymentresponsebodyreadystate.md
    assert set(vercel.READY_STATES) == {"QUEUED", "INITIALIZING", "BUILDING", "READY", "ERROR", "CANCELED", "BLOCKED"}
    assert vercel.READY_STATES["BLOCKED"] is DeployStatus.FAILED
    assert set(render.STATUSES) == {"created", "queued", "build_in_progress", "update_in_progress", "live",
                                    "deactivated", "build_failed", "update_failed", "canceled",
                                    "pre_deploy_in_progress", "pre_deploy_failed"}
    koyeb_enum = {"PENDING", "PROVISIONING", "SCHEDULED", "CANCELING", "CANCELED", "ALLOCATING", "STARTING",
                  "HEALTHY", "DEGRADED", "UNHEALTHY", "STOPPING", "STOPPED", "ERRORING", "ERROR", "STASHED",
                  "SLEEPING"}
    assert set(koyeb.STATUSES) | set(koyeb.ENDED) == koyeb_enum
    assert render.STATUSES["build_failed"] is DeployStatus.FAILED
    assert railway.STATUSES["CRASHED"] is DeployStatus.FAILED
    assert railway.STATUSES["REMOVED"] is not DeployStatus.READY and "REMOVED" not in railway.SERVED
    assert koyeb.STATUSES["HEALTHY"] is DeployStatus.READY
    assert koyeb.STATUSES["DEGRADED"] is koyeb.STATUSES["UNHEALTHY"] is DeployStatus.FAILED  # as koyeb-cli


@pytest.fixture(params=[VercelHarness, RenderHarness, RailwayHarness, KoyebHarness], ids=lambda c: c.name)
async def paas(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    harness: PaasHarness = request.param()
    await harness.start(tmp_path)
    yield harness
    await harness.stop()


async def test_refused_token_is_asked_once(paas: PaasHarness) -> None:
    target = paas.make_target_bad_token("web")
    paas.fake.requests.clear()
    with pytest.raises(PermanentError):
        await target.current()
    assert len(paas.fake.requests) == 1
    await target.aclose()


async def test_wait_ready_gives_up_with_a_failed_result(paas: PaasHarness) -> None:
    target = paas.make_target("web")
    paas.fake.step_s = 30.0  # the deployment stays in its first state
    handle = await target.deploy(make_release("staging", paas.sha(1)))
    result = await target.wait_ready(handle, timeout=0.2)
    assert result.status is DeployStatus.FAILED
    assert "not ready within" in result.message
    await target.aclose()


async def test_vercel_deployment_carries_the_release_and_team(tmp_path: Path) -> None:
    harness, target, release, handle = await first_deploy(VercelHarness, tmp_path)
    fake = harness.fake
    assert isinstance(fake, VercelFake)
    dep = fake.deployments[str(handle.vendor_ref)]
    assert dep["meta"][RELEASE_KEY] == release.release_id
    assert dep["target"] == "production"
    assert dep["gitSource"] == {"type": "github", "org": "aevon", "repo": "os", "ref": release.ref,
                                "sha": release.sha}
    await target.aclose()
    await harness.stop()


async def test_vercel_preview_deploys_and_rolls_back_by_redeploying(tmp_path: Path) -> None:
    fake = VercelFake("tok_p", step_s=0.05)
    fake.start()
    fake.add_project("site")
    settings = {"api_url": fake.url, "project": "site", "repo_id": "4242", "poll_interval_s": 0.05}
    try:
        target = build("vercel", settings, tmp_path, token="tok_p", preview=True)
        first = await target.deploy(make_release("dev", "a" * 40))
        assert (await target.wait_ready(first, 30)).status is DeployStatus.READY
        before = await target.current()
        second = await target.deploy(make_release("dev", "b" * 40))
        assert (await target.wait_ready(second, 30)).status is DeployStatus.READY
        assert fake.deployments[str(second.vendor_ref)]["target"] is None
        assert fake.deployments[str(second.vendor_ref)]["gitSource"]["repoId"] == "4242"
        assert before is not None and before.version == "a" * 40
        back = await target.rollback(before)
        assert back.detail["kind"] == "redeploy" and back.vendor_ref not in (first.vendor_ref, second.vendor_ref)
        assert (await target.wait_ready(back, 30)).status is DeployStatus.READY
        assert (await target.current()) is not None
        assert fake.projects[next(iter(fake.projects))]["targets"]["production"] is None
        await target.aclose()
    finally:
        fake.stop()


async def test_railway_graphql_errors_are_translated(tmp_path: Path) -> None:
    fake = RailwayFake("tok_r", step_s=0.05)
    fake.start()
    fake.add_service("svc-web", "env-production")
    settings = {**GOOD["railway"], "api_url": f"{fake.url}/graphql/v2", "token_kind": "project", "backoff_s": 0.01}
    try:
        target = build("railway", settings, tmp_path, token="tok_r")
        assert await target.current() is None  # the project token went as Project-Access-Token
        with pytest.raises(PermanentError) as caught:
            await target.wait_ready(target.handle("a" * 40, "no-such-deployment", release_id=None), 1)
        assert "railway deployment no-such-deployment" in str(caught.value)
        assert "Deployment not found" in str(caught.value)
        await target.aclose()
    finally:
        fake.stop()


async def test_koyeb_definition_carries_sha_and_release(tmp_path: Path) -> None:
    harness, target, release, handle = await first_deploy(KoyebHarness, tmp_path)
    fake = harness.fake
    assert isinstance(fake, KoyebFake)
    dep = next(d for d in fake.deployments if d["id"] == handle.vendor_ref)
    assert dep["definition"]["git"]["sha"] == release.sha
    env = {e["key"]: e["value"] for e in dep["definition"]["env"]}
    assert env[RELEASE_KEY] == release.release_id and env["PORT"] == "8000"
    assert (await target.wait_ready(handle, 30)).status is DeployStatus.READY
    seed = (await target.history())[-1]
    back = await target.rollback(seed)
    new = next(d for d in fake.deployments if d["id"] == back.vendor_ref)
    assert new["definition"]["git"]["sha"] == harness.sha(0) and RELEASE_KEY not in str(new["definition"]["env"])
    await target.aclose()
    await harness.stop()


async def test_indexed_targets_remember_releases_on_disk(tmp_path: Path) -> None:
    harness, target, release, handle = await first_deploy(RenderHarness, tmp_path)
    assert isinstance(target, render.RenderTarget)
    entry = await target.index.get(release.release_id)
    assert entry is not None and entry.vendor_ref == handle.vendor_ref and entry.sha == release.sha
    assert (await target.wait_ready(handle, 30)).status is DeployStatus.READY
    now = await target.current()
    assert now is not None and now.release_id == release.release_id
    await target.aclose()
    await harness.stop()


async def test_mixed_paas_example_spec_builds_every_target(tmp_path: Path) -> None:
    import yaml

    from deployments.spec import EnvironmentSpec

    raw = yaml.safe_load((Path(__file__).parents[2] / "deployments/examples/mixed-paas.yaml").read_text())
    spec = EnvironmentSpec.model_validate(raw)
    assert {s.provider for s in spec.services} == {"vercel", "railway", "render", "koyeb"}
    for svc in spec.services:
        assert set(svc.secrets) == {"token"}
        ctx = TargetContext(env=spec.environment, spec=svc, secrets={"token": SecretStr("t")}, state_dir=tmp_path)
        target = resolve(TARGETS, "target", svc.provider, f"services.{svc.name}.provider")(ctx)
        assert isinstance(target, PaasTarget) and target.service == svc.name
        await target.aclose()

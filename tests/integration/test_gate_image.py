"""The image gate against a real registry (Debian's docker-registry), anonymous and with token authentication."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployments.spec import ServiceSpec
from providers.errors import ConfigError
from providers.models import CheckResult, Outcome
from tests.fakes.github_state import new_sha
from tests.fakes.registry_token import ISSUER, SERVICE, RegistryTokenServer
from tests.integration.gates_support import environment, make_gate, release_input, text_of
from tests.integration.oci_registry import Pusher, RegistryProcess, ensure_binary

pytestmark = pytest.mark.slow
USER, PASSWORD = "ci-bot", "registry-pass-7f3a9c"


@pytest.fixture(scope="module")
def binary() -> str:
    found = ensure_binary()
    if found is None:
        pytest.fail("docker-registry is not installed and scripts/ensure-registry.sh could not install it")
    return found


@pytest.fixture(scope="module")
def registry(binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    reg = RegistryProcess(tmp_path_factory.mktemp("registry")).start(binary)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def token_server() -> Iterator[RegistryTokenServer]:
    server = RegistryTokenServer(username=USER, password=PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def secured(binary: str, token_server: RegistryTokenServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    root = tmp_path_factory.mktemp("secured")
    reg = RegistryProcess(root, token_realm=token_server.realm, token_service=SERVICE, token_issuer=ISSUER,
                          root_bundle=token_server.write_root_bundle(root / "root.pem")).start(binary)
    yield reg
    reg.stop()


def push_token(server: RegistryTokenServer, repository: str) -> str:
    """A push token, as a CI job would get one."""
    t = int(time.time())
    return server.sign({"iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": t + 300, "nbf": t - 10, "iat": t,
                        "jti": new_sha()[:16],
                        "access": [{"type": "repository", "name": repository, "actions": ["pull", "push"]}]})


async def check(reg: RegistryProcess, tmp: Path, sha: str, images: list[Any],
                secrets: dict[str, str] | None = None, **settings: Any) -> CheckResult:
    gate = make_gate("image_exists", {"images": images, "insecure_registries": [reg.host], "attempts": 2,
                                      **settings}, tmp, secrets=secrets)
    result = await gate.run(release_input(sha))
    assert PASSWORD not in text_of(result)
    return result


async def test_pushed_image_passes(registry: RegistryProcess, tmp_path: Path) -> None:
    sha = new_sha()
    digest = Pusher(registry.url).image("app/api", sha)
    result = await check(registry, tmp_path, sha, [f"{registry.host}/app/api"])
    assert result.outcome is Outcome.PASSED, result.summary
    assert result.findings[0].detail["digest"] == digest


async def test_image_never_pushed_fails_naming_it(registry: RegistryProcess, tmp_path: Path) -> None:
    sha = new_sha()
    Pusher(registry.url).image("app/api", sha)
    Pusher(registry.url).image("app/worker", new_sha())  # the repository exists, this release's tag does not
    result = await check(registry, tmp_path, sha, [
        f"{registry.host}/app/api", {"registry": registry.host, "repository": "app/worker"},
        f"{registry.host}/app/never-created",
    ])
    assert result.outcome is Outcome.FAILED
    assert [f.message for f in result.findings] == [
        f"image {registry.host}/app/worker:{sha} was never pushed",
        f"image {registry.host}/app/never-created:{sha} was never pushed",
    ]
    assert result.metrics["missing"] == 2


async def test_multi_arch_index_is_found(registry: RegistryProcess, tmp_path: Path) -> None:
    sha = new_sha()
    Pusher(registry.url).image("app/multi", "amd64-only")
    Pusher(registry.url).index("app/multi", sha, "amd64-only")
    result = await check(registry, tmp_path, sha, [f"{registry.host}/app/multi"])
    assert result.outcome is Outcome.PASSED, result.summary
    assert result.findings[0].detail["media_type"] == "application/vnd.oci.image.index.v1+json"


async def test_short_sha_tag_template_and_service_images(registry: RegistryProcess, tmp_path: Path) -> None:
    sha = new_sha()
    Pusher(registry.url).image("app/web", sha[:12])
    env = environment().model_copy(update={"services": [
        ServiceSpec(name="web", provider="gke", settings={"image": f"{registry.host}/app/web:latest"})]})
    gate = make_gate("image_exists", {"tag": "{short_sha}", "insecure_registries": [registry.host]}, tmp_path,
                     env=env)
    result = await gate.run(release_input(sha))
    assert result.outcome is Outcome.PASSED, result.summary


async def test_token_challenge_is_followed(secured: RegistryProcess, token_server: RegistryTokenServer,
                                           tmp_path: Path) -> None:
    sha = new_sha()
    Pusher(secured.url, token=push_token(token_server, "team/api")).image("team/api", sha)
    creds = {"username": USER, "password": PASSWORD}
    result = await check(secured, tmp_path, sha, [f"{secured.host}/team/api"], secrets=creds)
    assert result.outcome is Outcome.PASSED, result.summary
    assert token_server.issued[-1]["access"] == [{"type": "repository", "name": "team/api", "actions": ["pull"]}]
    assert token_server.issued[-1]["sub"] == USER
    missing = await check(secured, tmp_path, sha, [f"{secured.host}/team/worker"], secrets=creds)
    assert missing.outcome is Outcome.FAILED
    assert missing.summary == f"image {secured.host}/team/worker:{sha} was never pushed"


async def test_refused_credentials_are_error_without_the_password(secured: RegistryProcess, tmp_path: Path) -> None:
    sha = new_sha()
    wrong = await check(secured, tmp_path, sha, [f"{secured.host}/team/api"],
                        secrets={"username": USER, "password": PASSWORD[::-1]})
    assert wrong.outcome is Outcome.ERROR
    assert "token service" in wrong.summary and "refused our credentials" in wrong.summary
    assert PASSWORD[::-1] not in text_of(wrong)
    anonymous = await check(secured, tmp_path, sha, [f"{secured.host}/team/api"])
    assert anonymous.outcome is Outcome.ERROR and "refused anonymous access" in anonymous.summary


async def test_unreachable_registry_is_error(tmp_path: Path) -> None:
    gate = make_gate("image_exists", {"images": ["127.0.0.1:9/app/api"], "insecure_registries": ["127.0.0.1:9"],
                                      "attempts": 1}, tmp_path)
    result = await gate.run(release_input(new_sha()))
    assert result.outcome is Outcome.ERROR and "could not measure" in result.summary


@pytest.mark.parametrize(("settings", "location"), [
    ({"images": ["127.0.0.1:5000/app/api:v1"]}, "gates[0].settings.images[0]"),
    ({"images": ["127.0.0.1:5000/App/API"]}, "gates[0].settings.images[0]"),
    ({"images": []}, "gates[0].settings.images"),
    ({"images": ["ghcr.io/a/b"], "tag": "{release}"}, "gates[0].settings.tag"),
])
def test_bad_image_settings(tmp_path: Path, settings: dict[str, Any], location: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_gate("image_exists", settings, tmp_path)
    assert err.value.location == location

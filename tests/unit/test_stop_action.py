"""What fail fast does with each target's rollout in flight, as the targets declare it (tasks/services.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from deployments.spec import ServiceSpec
from providers.registry import TARGETS, resolve
from providers.targets.base import TargetContext
from providers.targets.kubernetes.target import KubernetesTarget
from providers.targets.local.target import LocalTarget
from tasks.services import stop_action

SETTINGS = {
    "vercel": {"project": "web-app", "repo": "aevon/os", "api_url": "http://127.0.0.1:9"},
    "render": {"service_id": "srv-web", "api_url": "http://127.0.0.1:9/v1"},
    "railway": {"service_id": "svc-web", "environment_id": "env-production", "api_url": "http://127.0.0.1:9/gql"},
    "koyeb": {"service_id": "svc-web", "api_url": "http://127.0.0.1:9"},
}


@pytest.mark.parametrize(("provider", "action"), [
    ("vercel", "abandon"), ("render", "cancel"), ("railway", "cancel"), ("koyeb", "cancel")])
async def test_paas_targets_declare_what_fail_fast_does(provider: str, action: str, tmp_path: Path) -> None:
    spec = ServiceSpec(name="web", provider=provider, settings=SETTINGS[provider], secrets={"token": "TOKEN"})
    ctx = TargetContext(env="staging", spec=spec, secrets={"token": SecretStr("t")}, state_dir=tmp_path)
    target = resolve(TARGETS, "target", provider, "services.web.provider")(ctx)
    try:
        assert stop_action(target) == action
    finally:
        await target.aclose()


def test_kubernetes_gke_and_local_rollouts_are_abandoned() -> None:
    """Their rollback supersedes a rollout in flight (one KubernetesTarget class serves kubernetes and gke)."""
    assert KubernetesTarget.abandonable_rollout is True and LocalTarget.abandonable_rollout is True


def test_a_target_that_declares_nothing_runs_to_its_end() -> None:
    class Plain:
        service, provider = "web", "render"  # a provider name alone no longer decides

    assert stop_action(Plain()) is None  # type: ignore[arg-type]

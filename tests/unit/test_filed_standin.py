"""The file-backed stand-in vendor outlives the process that deployed through it (bench_scaleout's kill scenario)."""

from __future__ import annotations

from pathlib import Path

from providers.models import DeployStatus, Release
from tests.standins.filed import FiledSettings, FiledTarget


def _release(n: int) -> Release:
    return Release(release_id=f"e-{n}", env="e", ref=f"v{n}", sha=f"{n}" * 40)


async def test_state_survives_a_new_instance_and_a_killed_rollout(tmp_path: Path) -> None:
    settings = FiledSettings(deploy_s=0.0, dir=str(tmp_path))
    first = FiledTarget("web", settings)
    handle = await first.deploy(_release(1))
    assert (await first.wait_ready(handle, 5)).status == DeployStatus.READY
    killed = FiledTarget("web", settings.model_copy(update={"deploy_s": 30.0}))
    await killed.deploy(_release(2))  # its process dies before the rollout is followed: v1 keeps serving
    later = FiledTarget("web", settings)  # the next run's process
    current = await later.current()
    assert current is not None and current.version == "1" * 40
    again = await later.deploy(_release(2))  # idempotent per release id, across processes
    assert again.vendor_ref == (await killed.deploy(_release(2))).vendor_ref
    assert (await later.wait_ready(again, 0.1)).status == DeployStatus.FAILED  # still rolling out
    back = await FiledTarget("web", settings).rollback(current)
    assert back.version == "1" * 40
    now = await FiledTarget("web", settings).current()
    assert now is not None and now.version == "1" * 40

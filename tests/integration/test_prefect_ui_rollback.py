"""A person opens a rolled-back run in the Prefect UI (Chromium): the failed check is red, the Logs tab says what
was deployed, what failed and what was restored, the rollback subflow shows its own artifact, and a screenshot in
the evidence artifact loads from the evidence server (flows/evidence.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows import evidence
from flows.deploy import deploy_flow, report_of
from flows.report import DeployOutcome, DeployReport
from tests.conftest import free_port
from tests.integration.envs import memory_spec, write_spec
from tests.integration.evidence_check import PLUGINS, WIDTH
from tests.integration.flow_env import release_repo, rev
from tests.integration.test_prefect_ui import SHOTS, browser_page

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ledger_url", "state_dir")]


async def deploy(spec_dir: Path, ref: str) -> DeployReport:
    return await report_of(await deploy_flow("dev", ref, spec_dir=str(spec_dir), return_state=True))


async def shown_after_reloads(page: Page, text: str | re.Pattern[str]) -> None:
    """Reload until `text` shows (logs reach the API in batches; the tab does not always poll)."""
    line = page.get_by_text(text).first
    for _ in range(20):
        if await line.is_visible():
            return
        await page.wait_for_timeout(1500)
        await page.reload()
    await expect(line).to_be_visible()


async def evidence_artifact_id(flow_run_id: str) -> str:
    async with get_client() as client:
        arts = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return str(next(a.id for a in arts if a.key == "evidence-dev"))


@pytest.mark.timeout(600)
async def test_a_rolled_back_run_in_the_prefect_ui(prefect_api: str, tmp_path: Path, state_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    port, home = free_port(), tmp_path / "evidence-home"
    evidence.start(state_dir, port, home)
    monkeypatch.setenv("AEVON_EVIDENCE_URL", evidence.evidence_url(port))
    monkeypatch.setenv("AEVON_PLUGINS", PLUGINS)
    try:
        await rolled_back_run_in_the_ui(prefect_api, tmp_path)
    finally:
        evidence.stop(home)


async def rolled_back_run_in_the_ui(prefect_api: str, tmp_path: Path) -> None:
    repo = release_repo(tmp_path / "repo")
    spec: dict[str, Any] = memory_spec(repo, ["api"], world=f"ui-{tmp_path.name}")
    spec["validation"]["checks"].append({"name": "e2e-shot", "kind": "screenshot", "service": "api",
                                         "error_retries": 0, "settings": {"outcome": "PASSED"}})
    write_spec(tmp_path / "specs", "dev", spec)
    good = await deploy(tmp_path / "specs", "v1")
    assert good.outcome == DeployOutcome.SUCCEEDED and good.flow_run_id
    spec["validation"]["checks"][0]["settings"]["outcome"] = "FAILED"
    write_spec(tmp_path / "specs", "dev", spec)
    bad = await deploy(tmp_path / "specs", "v2")
    assert bad.outcome == DeployOutcome.ROLLED_BACK
    v1, v2 = rev(repo, "v1")[:12], rev(repo, "v2")[:12]
    ui = prefect_api.removesuffix("/api")

    async with browser_page() as page:
        # the evidence artifact of v1: its screenshot is an <img> served by the evidence server, and it loads
        await page.goto(f"{ui}/v2/artifacts/artifact/{await evidence_artifact_id(good.flow_run_id)}")
        image = page.locator("img[alt=screenshot]").first
        await expect(image).to_be_visible()
        await page.wait_for_function("e => e.complete && e.naturalWidth > 0", arg=await image.element_handle())
        assert await image.evaluate("e => e.naturalWidth") == WIDTH
        await page.screenshot(path=SHOTS / "evidence-artifact.png", full_page=True)
        await page.goto(f"{ui}/v2/runs/flow-run/{bad.flow_run_id}")
        await expect(page.get_by_text("RolledBack").first).to_be_visible()
        await expect(page.get_by_text("env:dev").first).to_be_visible()  # its tags: filter runs by environment
        # the Logs tab: domain lines, not only "Finished in state Completed()"
        await shown_after_reloads(page, f"deployed api [memory]: {v1} → {v2} READY")
        await expect(page.get_by_text("check check-api [sleep]: FAILED").first).to_be_visible()
        await expect(page.get_by_text(re.compile(r"step deploy services: api finished: ok in")).first).to_be_visible()
        await page.screenshot(path=SHOTS / "rolled-back-logs.png", full_page=True)
        # the task runs: the failed check is in a Failed state, shown red
        await page.get_by_role("tab", name=re.compile("Task Runs")).click()
        row = page.locator("li, [role=row], div").filter(has_text=re.compile(r"check-api")).filter(
            has_text=re.compile(r"^Failed$|Failed")).last
        await expect(row).to_be_visible()
        failed = row.get_by_text("Failed", exact=True).first
        colour = await failed.evaluate(
            "e => { let n = e; while (n) { const s = getComputedStyle(n);"
            " for (const c of [s.color, s.backgroundColor]) { const m = c.match(/\\d+/g);"
            " if (m && +m[0] > 150 && +m[1] < 120 && +m[2] < 120) return c; } n = n.parentElement; } return null; }")
        assert colour is not None, "the Failed state of check-api is not shown in red"
        await page.screenshot(path=SHOTS / "rolled-back-task-runs.png", full_page=True)
        # the rollback subflow: its own artifact says what it restored
        await page.get_by_role("tab", name=re.compile("Subflow Runs")).click()
        await page.get_by_role("link", name=re.compile(r"^rollback-dev-")).first.click()
        await page.wait_for_url(re.compile(r"/runs/flow-run/"))
        await shown_after_reloads(page, f"restored api [memory]: {v2} → {v1} READY")
        await page.get_by_role("tab", name=re.compile("Artifacts")).click()
        await expect(page.get_by_text("rollback-dev").first).to_be_visible()
        await expect(page.get_by_text(re.compile(r"^completed: rollback of ")).first).to_be_visible()
        await page.screenshot(path=SHOTS / "rollback-artifact.png", full_page=True)

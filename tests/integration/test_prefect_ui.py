"""Real browser, real Prefect: staging run from its deployment page, prod approved and rejected in the Resume dialog."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar
from uuid import UUID, uuid4

import httpx
import pytest
import yaml
from playwright.async_api import Browser, Locator, Page, async_playwright, expect
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments.flow_runs import arun_deployment
from prefect.exceptions import PrefectHTTPStatusError

from providers.approval.signing import parse_public_key
from tests.integration.envs import ROOT
from tests.integration.prefect_ui_stack import APPROVER, Stack, approver_key, start_stack, stop_stack
from tests.pg import fetch

pytestmark = pytest.mark.slow

SHOTS = ROOT / "test-artifacts" / "prefect-ui"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
FINAL = ("Completed", "Failed", "Crashed", "Cancelled", "Refused", "RolledBack", "RollbackFailed")  # names
RUN_TIMEOUT_MS = 240_000  # a bound on waiting for a flow run (worker start included), never asserted on


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A Prefect server on a fresh PostgreSQL database, the project's deployments and a worker; stopped at the end."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    saved = dict(os.environ)
    s = Stack(tmp=tmp_path_factory.mktemp("prefect-ui"))
    try:
        start_stack(s)
        with temporary_settings(updates={PREFECT_API_URL: s.api}):
            yield s
    finally:
        try:
            stop_stack(s)
        finally:
            os.environ.clear()
            os.environ.update(saved)


# ---- the browser ---------------------------------------------------------------------------------------------------


@asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    """Debian Chromium through Playwright; a screenshot `failure.png` when the body raises."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser: Browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            try:
                yield page
            except BaseException:
                await page.screenshot(path=SHOTS / "failure.png", full_page=True)
                raise
        finally:
            await browser.close()


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def badge(page: Page, *states: str) -> Locator:
    """The run page's state badge showing exactly one of `states`.

    V2 UI: a `data-slot=badge` span in the header block whose breadcrumb starts with "Runs". Scoped to that block
    because the deployment page (still in the DOM for a moment after "View run") lists older runs with badges too.
    """
    header = page.locator("div:has(> nav[aria-label=breadcrumb] a[href='/v2/runs'])")
    return header.locator("[data-slot=badge]").filter(has_text=re.compile(rf"^\s*({'|'.join(states)})\s*$")).first


async def settles_in(page: Page, run_id: UUID, expected: str) -> None:
    """Wait until the run page's badge shows `expected` or a final state, then check that it is `expected`."""
    shown = badge(page, expected, *(s for s in FINAL if s != expected))
    await expect(shown).to_be_visible(timeout=RUN_TIMEOUT_MS)
    text = (await shown.inner_text()).strip()
    if text != expected:
        run = await flow_run(run_id)
        raise AssertionError(f"run {run_id} shows {text!r}, not {expected!r}: {run.state and run.state.message}")


async def deployment_id(name: str) -> UUID:
    async with get_client() as client:
        return (await client.read_deployment_by_name(name)).id


async def run_from_deployment_page(page: Page, stack: Stack, deployment: str, ref: str | None, shot_name: str) -> UUID:
    """Deployment page → Run → Quick run (dialog → Run) or Custom run (ref → Submit) → toast "View run" → run page."""
    await page.goto(f"{stack.ui}/v2/deployments/deployment/{await deployment_id(deployment)}")
    await page.get_by_role("button", name="Run", exact=True).click()
    if ref is None:
        await page.get_by_role("menuitem", name="Quick run").click()
        dialog = page.get_by_role("dialog", name="Run Deployment")
        await expect(dialog.get_by_role("textbox", name="ref", exact=True)).to_have_value("main")
        await shot(page, shot_name)
        await dialog.get_by_role("button", name="Run", exact=True).click()
    else:
        await page.get_by_role("menuitem", name="Custom run").click()
        await page.get_by_label("ref", exact=True).fill(ref)
        await shot(page, shot_name)
        await page.get_by_role("button", name="Submit", exact=True).click()
    view = page.locator("[data-sonner-toast] a[href*='/runs/flow-run/']").filter(has_text="View run")
    href = await view.get_attribute("href")
    assert href is not None
    await view.click()
    await page.wait_for_url(re.compile(r"/v2/runs/flow-run/[0-9a-f-]{36}"))
    return UUID(href.rsplit("/", 1)[-1])


async def answer_in_ui(page: Page, stack: Stack, run_id: UUID, *, approve: bool, reason: str, shot_name: str) -> str:
    """Run page → "Open menu" → "Resume" → dialog "Resume Flow Run": the switch, approver, reason → "Resume".

    Returns the dialog's text (the plan the approver read).
    """
    await page.goto(f"{stack.ui}/v2/runs/flow-run/{run_id}")
    await settles_in(page, run_id, "Paused")
    await page.get_by_role("button", name="Open menu", exact=True).first.click()
    await page.get_by_role("menuitem", name="Resume", exact=True).click()
    dialog = page.get_by_role("dialog", name="Resume Flow Run")
    switch = dialog.get_by_role("switch", name=re.compile(r"^Approve( \(Optional\))?$"))
    await expect(switch).not_to_be_checked()  # the form starts at "reject"
    if approve:
        await switch.click()
        await expect(switch).to_be_checked()
    await dialog.get_by_role("textbox", name=re.compile(r"^Approver")).fill(APPROVER)
    await dialog.get_by_role("textbox", name=re.compile(r"^Reason")).fill(reason)
    # the signature, as an approver makes it in a terminal: aevon-deploy approve ... --print-signature
    signed = stack.cli("approve", str(run_id), "--as", APPROVER, "--key", str(approver_key(stack.tmp)[0]),
                       "--reason", reason, *([] if approve else ["--reject"]), "--print-signature")
    assert signed.returncode == 0, signed.stderr
    await dialog.get_by_role("textbox", name=re.compile(r"^Signature")).fill(signed.stdout.strip())
    plan = await dialog.inner_text()
    await shot(page, shot_name)
    await dialog.get_by_role("button", name="Resume", exact=True).click()
    await expect(page.get_by_text("Flow run resumed")).to_be_visible()
    return plan


async def log_line_shown(page: Page, text: str) -> None:
    """Reload the run page until its Logs tab shows `text` (the tab does not always poll for new lines by itself)."""
    line = page.get_by_text(text).first
    for _ in range(30):
        if await line.is_visible():
            return
        await page.wait_for_timeout(2000)
        await page.reload()
        await page.get_by_text("Worker '").first.wait_for()  # the log list has loaded
    await expect(line).to_be_visible()


# ---- what the stack says ---------------------------------------------------------------------------------------


async def flow_run(run_id: UUID) -> FlowRun:
    async with get_client() as client:
        return await client.read_flow_run(run_id)


async def wait_for_state(run_id: UUID, state: StateType) -> FlowRun:
    """Poll the API until the run reaches `state` (bounded by RUN_TIMEOUT_MS; never a timing assert)."""
    for _ in range(RUN_TIMEOUT_MS // 500):
        run = await flow_run(run_id)
        if run.state_type == state:
            return run
        if run.state is not None and run.state.is_final():
            break
        await asyncio.sleep(0.5)
    raise AssertionError(f"run {run_id} is {run.state_type} ({run.state_name}: {run.state and run.state.message}), "
                         f"not {state}")


async def ledger_row(stack: Stack, run_id: UUID) -> dict[str, Any]:
    rows = await fetch(stack.ledger_url, "SELECT * FROM aevon_releases WHERE flow_run_id=$1", str(run_id))
    assert len(rows) == 1, rows
    return dict(rows[0])


async def served(stack: Stack, env: str) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        resp = await client.get(stack.app_url(env) + "/health")
    resp.raise_for_status()
    doc: dict[str, Any] = resp.json()
    return doc


# ---- the tests -----------------------------------------------------------------------------------------------------


@pytest.mark.timeout(1200)
async def test_staging_and_prod_approval_through_the_prefect_ui(stack: Stack) -> None:
    async with browser_page() as page:
        # 1. staging from its deployment page: Quick run (ref main), then Custom run with a release tag
        quick = await run_from_deployment_page(page, stack, "deploy/deploy-staging", None, "01-staging-quick-run")
        await settles_in(page, quick, "Completed")
        await shot(page, "02-staging-main-completed")
        custom = await run_from_deployment_page(page, stack, "deploy/deploy-staging", "v1.0.0",
                                                "03-staging-custom-run-v1.0.0")
        await settles_in(page, custom, "Completed")
        await shot(page, "04-staging-v1.0.0-completed")
        for run_id, ref in ((quick, "main"), (custom, "v1.0.0")):
            row = await ledger_row(stack, run_id)
            assert (row["env"], row["ref"], row["status"], row["sha"]) == ("staging", ref, "succeeded", stack.shas[ref])
        assert (await served(stack, "staging"))["version"] == "1.0.0"

        # 2. prod v1.0.0 (the SHA that passed staging): pauses with the plan; ana.lead approves in the dialog
        approved = await run_from_deployment_page(page, stack, "deploy-prod/deploy-prod", "v1.0.0",
                                                  "05-prod-custom-run-v1.0.0")
        plan = await answer_in_ui(page, stack, approved, approve=True, reason="staging green, CR-101",
                                  shot_name="06-prod-resume-dialog-approve")
        assert f"Approve deploy of v1.0.0 ({stack.shas['v1.0.0'][:12]}) to prod" in plan
        staged = await ledger_row(stack, custom)
        assert f"Validated in staging: release {staged['release_id']}" in plan
        await settles_in(page, approved, "Completed")
        await shot(page, "07-prod-v1.0.0-completed")
        assert (await flow_run(approved)).state_type == StateType.COMPLETED
        row = await ledger_row(stack, approved)
        assert (row["status"], row["approver"], row["approval_reason"], row["sha"]) == (
            "succeeded", APPROVER, "approved: staging green, CR-101", stack.shas["v1.0.0"])
        assert row["approval_key"] == parse_public_key(approver_key(stack.tmp)[1]).fingerprint  # who signed
        first = await served(stack, "prod")
        assert first["version"] == "1.0.0" and first["release_id"] == row["release_id"]
        history = stack.cli("history", "prod")
        assert history.returncode == 0, history.stderr
        line = next(ln for ln in history.stdout.splitlines() if row["release_id"] in ln)
        assert "succeeded" in line and APPROVER in line and "v1.0.0" in line

        # 3. prod v1.1.0 (passed staging as `main`), rejected in the dialog: Refused (a Failed type), nothing changed
        rejected = await run_from_deployment_page(page, stack, "deploy-prod/deploy-prod", "v1.1.0",
                                                  "08-prod-custom-run-v1.1.0")
        await answer_in_ui(page, stack, rejected, approve=False, reason="change freeze",
                           shot_name="09-prod-resume-dialog-reject")
        await settles_in(page, rejected, "Refused")  # the state's name, what the UI's badge shows
        await log_line_shown(page, "REFUSED: rejected by ana.lead: change freeze; nothing was changed")
        await shot(page, "10-prod-v1.1.0-rejected")
        run = await flow_run(rejected)
        assert run.state_type == StateType.FAILED and "REFUSED" in str(run.state and run.state.message)
        row = await ledger_row(stack, rejected)
        assert (row["status"], row["approver"], row["approval_reason"]) == (
            "refused", APPROVER, "rejected: change freeze")
        assert await served(stack, "prod") == first  # same version, same release, same process

    # 4. the same answer from a terminal: `aevon-deploy approve RUN_ID --as NAME --reason TEXT [--reject]`
    async with get_client() as client:
        dep = await client.read_deployment_by_name("deploy-prod/deploy-prod")
        cli_run = await client.create_flow_run_from_deployment(dep.id, parameters={"ref": "v1.1.0"})
    await wait_for_state(cli_run.id, StateType.PAUSED)
    refused = stack.cli("approve", str(cli_run.id), "--as", "mallory", "--reason", "trust me")
    assert refused.returncode == 3 and "'mallory' is not an approver of prod" in refused.stderr
    answered = stack.cli("approve", str(cli_run.id), "--as", APPROVER, "--key", str(approver_key(stack.tmp)[0]),
                         "--reason", "not this week", "--reject")
    assert answered.returncode == 0, answered.stderr
    await wait_for_state(cli_run.id, StateType.FAILED)
    row = await ledger_row(stack, cli_run.id)
    assert (row["status"], row["approver"], row["approval_reason"]) == ("refused", APPROVER, "rejected: not this week")
    assert await served(stack, "prod") == first


async def test_prod_parameter_schema_refuses_a_branch(stack: Stack) -> None:
    async with get_client() as client:
        deployments = {d.name: d for d in await client.read_deployments()}
    assert set(deployments) >= {"deploy-dev", "deploy-staging", "deploy-prod"}
    assert all(d.enforce_parameter_schema for d in deployments.values())
    schema = deployments["deploy-prod"].parameter_openapi_schema or {}
    assert schema["properties"]["ref"]["pattern"] == r"^v\d+\.\d+\.\d+$" and schema["required"] == ["ref"]
    assert [s.schedule.cron for s in deployments["deploy-staging"].schedules] == ["*/30 * * * *"]  # type: ignore[union-attr]

    with pytest.raises(PrefectHTTPStatusError) as caught:
        await arun_deployment("deploy-prod/deploy-prod", parameters={"ref": "main"}, timeout=0)
    reply = caught.value.response
    assert reply.status_code == 409 and "Validation failed for field 'ref'" in reply.text, reply.text
    assert "'main' does not match" in reply.text
    cli = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", "deploy-prod/deploy-prod",
                          "--param", "ref=main"], capture_output=True, text=True, env={**os.environ, **stack.env},
                         cwd=ROOT, timeout=120)
    assert cli.returncode != 0 and "Validation failed for field 'ref'" in cli.stdout + cli.stderr
    async with get_client() as client:
        runs = await client.read_flow_runs()
    prod_id = deployments["deploy-prod"].id
    assert not [r for r in runs if r.deployment_id == prod_id and r.parameters.get("ref") == "main"]


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


async def _notified(api: str, event: Any, needle: str) -> str:
    """Emit `event` until a notification containing `needle` arrives (the triggers service picks new automations up
    on its own cycle); returns its text."""
    from prefect.events.clients import PrefectEventsClient

    # Our own events client: emit_event()'s process-wide worker may already be bound to another test's server.
    async with PrefectEventsClient(api_url=api) as events:
        for _ in range(12):
            await events.emit(event.model_copy(update={"id": uuid4()}))
            for _ in range(20):
                hits = [b.decode() for b in _Hook.received if needle in b.decode()]
                if hits:
                    return hits[0]
                await asyncio.sleep(0.25)
    raise AssertionError(f"no notification with {needle!r} within 60 s (got {len(_Hook.received)} others)")


async def test_serve_creates_the_notifications(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make serve`'s prepare step makes the automations (idempotently), and each of our events notifies."""
    from prefect.events.schemas.events import Event

    from flows.notify import AUTOMATIONS_DIR, NOTIFY_URL_ENV, prepare_notifications

    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        monkeypatch.delenv(NOTIFY_URL_ENV, raising=False)
        assert (await prepare_notifications()).startswith("notifications: off")  # no URL, no block: nothing made
        async with get_client() as client:
            assert not await client.read_automations()
        monkeypatch.setenv(NOTIFY_URL_ENV, f"http://127.0.0.1:{server.server_port}/hook")
        await prepare_notifications()
        said = await prepare_notifications()  # twice: still one automation per file
        assert said == "notifications: 4 automations to block aevon-notify"
        async with get_client() as client:
            made = await client.read_automations()
        names = sorted(a.name for a in made)
        shipped = sorted(yaml.safe_load(p.read_text())["name"] for p in AUTOMATIONS_DIR.glob("*.yaml"))
        assert names == shipped and len(names) == 4
        assert all(a.enabled and a.actions[0].block_document_id is not None for a in made)  # type: ignore[union-attr]

        base = {"env": "staging", "ref": "v9.9.9", "sha": "abc123", "release_id": "staging-abc123-1",
                "flow_run_url": "http://127.0.0.1:4200/runs/flow-run/1"}
        resource = {"prefect.resource.id": "aevon.environment.staging"}
        # 1. rollback failed (first: it needs a person now), with what is left and the command to retry
        text = await _notified(stack.api, Event(event="aevon.deploy.rollback-failed", resource=resource, payload={
            **base, "error": "validation failed: api-health", "left": "api: FAILED (timeout)",
            "rollback_command": "aevon-deploy rollback staging staging-abc123-1"}), "ROLLBACK FAILED")
        assert "api: FAILED (timeout)" in text and "aevon-deploy rollback staging staging-abc123-1" in text
        # 2. rolled back (the text of the automation docs/prefect-ui.md always showed)
        text = await _notified(stack.api, Event(event="aevon.deploy.rolled-back", resource={
            **resource, "aevon.outcome": "rolled_back"}, payload={**base, "error": "validation failed: api-health"}),
            "aevon.environment.staging rolled back")
        assert "aevon.environment.staging rolled back" in text and "v9.9.9" in text and "api-health" in text
        # 3. refused, 4. waiting for approval
        text = await _notified(stack.api, Event(event="aevon.deploy.refused", resource=resource, payload={
            **base, "error": "gates failed: ci: 2 checks red"}), "to aevon.environment.staging refused")
        assert "gates failed: ci: 2 checks red" in text
        text = await _notified(stack.api, Event(event="aevon.deploy.awaiting-approval", resource=resource, payload={
            **base, "approvers": "ana.lead, ops.oncall", "timeout_s": 3600,
            "approve_command": "aevon-deploy approve 1 --as NAME --key KEY --reason TEXT"}), "waits for approval")
        assert "ana.lead, ops.oncall" in text and base["flow_run_url"] in text
    finally:
        server.shutdown()
        server.server_close()

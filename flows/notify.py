"""Events a person must act on, and the Prefect automations (deployments/automations/) that notify about them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from prefect.events import emit_event
from pydantic import SecretStr

from flows.report import DeployOutcome, DeployReport

AUTOMATIONS_DIR = Path(__file__).resolve().parents[1] / "deployments" / "automations"
BLOCK_NAME = "aevon-notify"
NOTIFY_URL_ENV = "AEVON_NOTIFY_URL"
PLACEHOLDER_BLOCK = "00000000-0000-0000-0000-000000000000"
# The order `make serve` creates them in: the one that needs a person most first.
AUTOMATION_FILES = ("notify-rollback-failed.yaml", "notify-rolled-back.yaml", "notify-refused.yaml",
                    "notify-awaiting-approval.yaml")
EVENTS = {
    DeployOutcome.SUCCEEDED: "aevon.deploy.succeeded",
    DeployOutcome.ROLLED_BACK: "aevon.deploy.rolled-back",
    DeployOutcome.ROLLBACK_FAILED: "aevon.deploy.rollback-failed",
    DeployOutcome.REFUSED: "aevon.deploy.refused",
    DeployOutcome.FAILED: "aevon.deploy.failed",
    DeployOutcome.NOTHING_TO_PROMOTE: "aevon.deploy.nothing-to-promote",
}
AWAITING_APPROVAL = "aevon.deploy.awaiting-approval"


def flow_run_url(flow_run_id: str | None) -> str | None:
    """The run's page in the Prefect UI (PREFECT_UI_URL, derived from the API URL), when one is configured."""
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui and flow_run_id else None


def _resource(env: str, **extra: str) -> dict[str, str]:
    return {"prefect.resource.id": f"aevon.environment.{env}", "prefect.resource.name": env, **extra}


def outcome_payload(report: DeployReport) -> dict[str, Any]:
    """What a person needs to act on a run's outcome: where, what, the run's page, the error, what is left."""
    left: list[str] = []
    if report.outcome == DeployOutcome.ROLLBACK_FAILED and report.rollback is not None:
        left = list(report.rollback.notes) + [
            f"{s.service}: {s.status.value} ({s.message})" for s in report.rollback.services
            if s.status.value != "READY"]
    elif report.outcome == DeployOutcome.FAILED:
        left = [f"{s.service}: now {str(s.after or '?')[:12]}" for s in report.services]
    return {"env": report.env, "ref": report.ref, "sha": report.sha, "release_id": report.release_id,
            "flow_run_id": report.flow_run_id, "flow_run_url": flow_run_url(report.flow_run_id),
            "error": report.error, "left": "; ".join(left) or "nothing",
            "rollback_command": f"aevon-deploy rollback {report.env} {report.release_id}" if report.release_id
            else None}


def emit_outcome(report: DeployReport) -> None:
    """aevon.deploy.<outcome> on `aevon.environment.<env>` with `outcome_payload`."""
    emit_event(event=EVENTS[report.outcome], resource=_resource(report.env, **{"aevon.outcome": report.outcome.value}),
               payload=outcome_payload(report))


def emit_awaiting_approval(env: str, payload: dict[str, Any]) -> None:
    """aevon.deploy.awaiting-approval: a run holds the environment until an approver answers."""
    emit_event(event=AWAITING_APPROVAL, resource=_resource(env), payload=payload)


def automation_specs(folder: Path = AUTOMATIONS_DIR) -> list[dict[str, Any]]:
    """The shipped automations, in AUTOMATION_FILES order (then any other YAML in the folder)."""
    files = [folder / f for f in AUTOMATION_FILES if (folder / f).is_file()]
    files += sorted(p for p in folder.glob("*.yaml") if p not in files)
    return [yaml.safe_load(p.read_text()) for p in files]


async def ensure_block(url: SecretStr | None) -> UUID | None:
    """The notification block the automations send to.

    With a URL (AEVON_NOTIFY_URL: a Slack incoming webhook or any endpoint taking `{"text": ...}` JSON) the block
    `aevon-notify` is created or updated to post there; without one, an existing block document named
    `aevon-notify` (of any notification type, made by you) is used; otherwise None (no automation can notify).
    """
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client

    if url is not None:
        block = CustomWebhookNotificationBlock(
            name=BLOCK_NAME, url=url.get_secret_value(), json_data={"text": "{{subject}}\n{{body}}"},
            allow_private_urls=True,
        )
        return await block.asave(BLOCK_NAME, overwrite=True)
    async with get_client() as client:
        for doc in await client.read_block_documents():
            if doc.name == BLOCK_NAME:
                return doc.id
    return None


async def ensure_automations(block_id: UUID, folder: Path = AUTOMATIONS_DIR) -> list[UUID]:
    """Create the shipped automations, or update the ones of the same name (idempotent); returns their ids."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    ids: list[UUID] = []
    async with get_client() as client:
        for raw in automation_specs(folder):
            for action in raw.get("actions", []):
                if action.get("block_document_id") == PLACEHOLDER_BLOCK:
                    action["block_document_id"] = str(block_id)
            core = AutomationCore.model_validate(raw)
            existing = await client.read_automations_by_name(core.name)
            if existing:
                for found in existing:
                    await client.update_automation(found.id, core)
                ids.append(existing[0].id)
            else:
                ids.append(await client.create_automation(core))
    return ids


async def prepare_notifications() -> str:
    """`make serve`: the block and the automations; returns a line saying what was done (never the URL)."""
    raw = os.environ.get(NOTIFY_URL_ENV)
    block_id = await ensure_block(SecretStr(raw) if raw else None)
    if block_id is None:
        return (f"notifications: off (set {NOTIFY_URL_ENV}, or create a notification block named {BLOCK_NAME}, "
                "then run serve again)")
    ids = await ensure_automations(block_id)
    return f"notifications: {len(ids)} automations to block {BLOCK_NAME}"

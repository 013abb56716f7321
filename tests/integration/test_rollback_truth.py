"""Rollbacks tell the truth: a manual `aevon-deploy rollback` is a ledger row that `status` and `history` count, and
a rollback that leaves the serving release unhealthy ends ROLLBACK_FAILED, saying so (issues 13 and 14)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)

from flows.cli import main
from flows.deploy import deploy_flow, report_of
from flows.report import DeployOutcome, DeployReport
from tests.integration.envs import memory_spec, write_spec
from tests.integration.flow_env import release_repo, rev

pytestmark = pytest.mark.usefixtures("prefect_api", "ledger_url", "state_dir")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`aevon-deploy ARGS` in this process (the memory target's world is per process)."""
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return code, out.out


def test_manual_rollback_is_recorded_and_status_and_history_count_it(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    repo, specs = release_repo(tmp_path / "repo"), tmp_path / "specs"
    write_spec(specs, "dev", memory_spec(repo, ["api", "web"], world=f"manual-{tmp_path.name}"))
    pre = ["--spec-dir", str(specs)]
    for ref in ("v1", "v2"):
        code, out = cli(capsys, *pre, "deploy", "dev", "--ref", ref, "--json")
        assert code == 0, out
    v2_id = json.loads(out)["release_id"]

    code, out = cli(capsys, *pre, "rollback", "dev", v2_id, "--reason", "customers see v2's bug", "--json")
    assert code == 0 and json.loads(out)["ok"], out

    code, out = cli(capsys, *pre, "status", "dev", "--json")
    st = json.loads(out)
    v1 = rev(repo, "v1")
    assert [(s["service"], s["serving"], s["verdict"]) for s in st["services"]] == [
        ("api", v1, "as expected"), ("web", v1, "as expected")]  # no drift: the ledger expects v1 again
    assert all(s["expected"]["why"] == f"restored by the rollback of {s['expected']['release_id']}"
               for s in st["services"])
    assert st["last_good"]["ref"] == "v1"  # v2 was undone by hand: not "serving (last good)" any more
    assert st["last_run"]["status"] == "manual_rollback" and st["last_run"]["ref"] == "rollback:v2"

    code, out = cli(capsys, *pre, "history", "dev", "--json")
    rows = json.loads(out)
    assert [r["status"] for r in rows] == ["manual_rollback", "succeeded", "succeeded"]
    rb = rows[0]
    assert rb["rolls_back"] == v2_id and rb["sha"] == rev(repo, "v2")
    assert rb["started_by"] and "@" in rb["started_by"]  # who: the OS user of this CLI run
    assert rb["reason"] == f"rollback of {v2_id} (customers see v2's bug)"
    assert rb["duration_s"] is not None and rb["run_url"] and rb["flow_run_id"]
    code, out = cli(capsys, *pre, "history", "dev")
    assert "manual_rollback" in out and f"why: rollback of {v2_id}" in out

    code, out = cli(capsys, *pre, "stats", "dev", "--json")  # the rollback is no deploy; v2 was a failed change
    stats = json.loads(out)
    assert code == 0 and (stats["runs"], stats["deployments"], stats["failures"]) == (2, 1, 1), stats
    assert stats["change_failure_rate"] == 0.5 and stats["time_to_restore_s"] is not None and not stats["not_restored"]


def test_rollback_of_an_unknown_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo, specs = release_repo(tmp_path / "repo"), tmp_path / "specs"
    write_spec(specs, "dev", memory_spec(repo, ["api"], world=f"unknown-{tmp_path.name}"))
    capsys.readouterr()
    code = main(["--spec-dir", str(specs), "rollback", "dev", "dev-nosuchrun"])
    err = capsys.readouterr().err
    assert code == 3 and "no run 'dev-nosuchrun' of dev in the release ledger" in err and "Traceback" not in err


class Health:
    """A health endpoint whose answer the test sets (the restored release's /health)."""

    def __init__(self) -> None:
        self.status = HTTPStatus.OK
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(health.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def health() -> Iterator[Health]:
    h = Health()
    threading.Thread(target=h.server.serve_forever, daemon=True).start()
    try:
        yield h
    finally:
        h.server.shutdown()
        h.server.server_close()


async def deploy(spec_dir: Path, ref: str) -> DeployReport:
    return await report_of(await deploy_flow("dev", ref, spec_dir=str(spec_dir), return_state=True))


@pytest.mark.parametrize("restored_healthy", [True, False])
async def test_rollback_leaving_the_serving_release_unhealthy_fails(tmp_path: Path, health: Health,
                                                                    restored_healthy: bool) -> None:
    repo, specs = release_repo(tmp_path / "repo"), tmp_path / "specs"
    spec: dict[str, Any] = memory_spec(repo, ["api"], world=f"sick-{tmp_path.name}")
    spec["validation"]["checks"].append({"name": "api-health", "kind": "health", "service": "api",
                                         "error_retries": 0, "settings": {"url": health.url}})
    write_spec(specs, "dev", spec)
    assert (await deploy(specs, "v1")).outcome == DeployOutcome.SUCCEEDED
    health.status = HTTPStatus.OK if restored_healthy else HTTPStatus.SERVICE_UNAVAILABLE
    spec["validation"]["checks"][0]["settings"]["outcome"] = "FAILED"  # v2's own check fails: roll back
    write_spec(specs, "dev", spec)
    bad = await deploy(specs, "v2")
    assert bad.rollback is not None and bad.flow_run_id
    assert [(s.service, s.after) for s in bad.rollback.services] == [("api", rev(repo, "v1"))]  # v1 restored
    assert [(r.name, str(r.outcome)) for r in bad.rollback.health] == [
        ("api-health", "PASSED" if restored_healthy else "FAILED")]
    async with get_client() as client:  # the rollback's own child run: green when it restored, red when it failed
        [child] = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(bad.flow_run_id)])))
    assert child.state is not None
    assert (child.state.type.value, child.state_name) == (
        ("COMPLETED", "Completed") if restored_healthy else ("FAILED", "RollbackFailed")), child.state
    if restored_healthy:
        assert bad.outcome == DeployOutcome.ROLLED_BACK and bad.rollback.ok
        return
    assert "serving release is unhealthy: api-health FAILED" in str(child.state.message)
    assert bad.outcome == DeployOutcome.ROLLBACK_FAILED and not bad.rollback.ok and bad.exit_code == 5
    note = " ".join(bad.rollback.notes)
    assert "serving release is unhealthy: api-health FAILED: " in note and "deploy a fix" in note
    assert "Finish with" not in note  # running the rollback again would not heal it
    assert bad.error and bad.error.startswith("validation failed: ")
    assert "; after the rollback the serving release is unhealthy: api-health FAILED" in bad.error
    async with get_client() as client:
        run = await client.read_flow_run(UUID(bad.flow_run_id))
        assert run.state_name == "RollbackFailed" and run.state is not None  # the UI's state message says why
        assert "serving release is unhealthy: api-health FAILED" in str(run.state.message)
        [child] = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])))
        arts = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[child.id])))
    [art] = [a for a in arts if a.key == "rollback-dev"]
    assert art.description and art.description.startswith(
        f"FAILED: rollback of {bad.release_id} (serving release is unhealthy: api-health FAILED")
    assert "**The serving release is unhealthy: api-health FAILED" in str(art.data)

"""The `aevon-deploy` command line: help, plan, deploy exit codes, history, status, stats, friendly errors and empty
states, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.envs import ROOT, memory_spec, write_spec
from tests.integration.test_flow_dag import repo, sha  # noqa: F401 - fixture

CLI = [sys.executable, "-m", "flows.cli"]


def run(
    *args: str, spec_dir: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    pre = ["--spec-dir", str(spec_dir)] if spec_dir else []
    return subprocess.run([*CLI, *pre, *args], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, **(env or {})}, check=False)


@pytest.mark.parametrize("cmd", [[], ["plan"], ["deploy"], ["approve"], ["rollback"], ["history"], ["status"],
                                 ["stats"], ["unlock"], ["db"], ["db", "backups"], ["db", "restore"], ["completion"]])
def test_help_on_every_command(cmd: list[str]) -> None:
    out = run(*cmd, "--help")
    assert out.returncode == 0 and f"Usage: aevon-deploy {' '.join(cmd)}".rstrip() in out.stdout


def test_top_level_help_documents_exit_codes() -> None:
    out = run("--help")
    assert "4 validation or a deploy" in " ".join(out.stdout.split()) and "5 the rollback itself failed" in out.stdout


def test_unknown_environment_and_malformed_ref_are_refused(tmp_path: Path, repo: Path) -> None:  # noqa: F811
    write_spec(tmp_path, "dev", memory_spec(repo, ["api"]))
    out = run("deploy", "qa", "--ref", "v1", spec_dir=tmp_path)
    assert out.returncode == 3 and "unknown environment 'qa' (known: dev)" in out.stderr
    out = run("plan", "dev", "--ref", "v1..v2", spec_dir=tmp_path)
    assert out.returncode == 3 and "malformed git ref 'v1..v2'" in out.stderr


def test_missing_secret_is_named_and_its_value_never_printed(tmp_path: Path, repo: Path) -> None:  # noqa: F811
    spec = memory_spec(repo, ["api"])
    spec["services"][0]["secrets"] = {"token": "API_TOKEN", "other": "OTHER_TOKEN"}
    write_spec(tmp_path, "dev", spec)
    env = {"API_TOKEN": "s3cr3t-value-123", "OTHER_TOKEN": ""}
    out = run("plan", "dev", "--ref", "v1", spec_dir=tmp_path, env=env)
    assert out.returncode == 3
    assert "services[0].secrets.other: secret OTHER_TOKEN is not set" in out.stderr
    assert "s3cr3t" not in out.stdout + out.stderr


def test_plan_without_secrets_lists_them_all_and_still_shows_the_whole_dag(tmp_path: Path,
                                                                            repo: Path) -> None:  # noqa: F811
    spec = memory_spec(repo, ["api", "web"], depends={"web": ["api"]})
    spec["services"][0]["secrets"] = {"token": "API_TOKEN_H14"}
    spec["services"][1]["secrets"] = {"token": "WEB_TOKEN_H14"}
    spec["validation"]["checks"][1]["secrets"] = {"key": "CHECK_KEY_H14"}
    write_spec(tmp_path, "dev", spec)
    out = run("plan", "dev", "--ref", "v2", spec_dir=tmp_path)
    assert out.returncode == 3, out.stderr
    assert "3 secret(s) missing" in out.stderr
    for name, where in (("API_TOKEN_H14", "services[0].secrets.token"), ("WEB_TOKEN_H14", "services[1].secrets.token"),
                        ("CHECK_KEY_H14", "validation.checks[1].secrets.key")):
        assert f"{where}: secret {name} is not set" in out.stderr
    v2 = sha(repo, "v2")[:12]
    assert f"- api [memory] not asked → {v2} (needs secret API_TOKEN_H14)" in out.stdout  # never "(none)"
    assert f"- web [memory] not asked → {v2} (needs secret WEB_TOKEN_H14)" in out.stdout
    assert "check-web [sleep] (needs secret CHECK_KEY_H14)" in out.stdout and "on failure: rollback" in out.stdout
    data = json.loads(run("plan", "dev", "--ref", "v2", "--json", spec_dir=tmp_path).stdout)
    assert sorted(data["missing_secrets"]) == ["API_TOKEN_H14", "CHECK_KEY_H14", "WEB_TOKEN_H14"]
    assert [s["needs"] for s in data["services"]] == [["API_TOKEN_H14"], ["WEB_TOKEN_H14"]]


def test_friendly_errors_and_completion(tmp_path: Path) -> None:
    out = run("plan", "dev", spec_dir=tmp_path / "nowhere")
    assert out.returncode == 2 and f"--spec-dir {tmp_path / 'nowhere'}: no such folder" in out.stderr
    out = run("approve", "not-a-run", "--as", "ana", "--reason", "x")
    assert out.returncode == 3 and "'not-a-run' is not a flow run id" in out.stderr
    assert "Traceback" not in out.stderr
    out = run("deploy", "dev")
    assert out.returncode == 2 and "--ref" in out.stderr
    out = run("completion", "--shell", "bash")
    assert out.returncode == 0 and "aevon-deploy" in out.stdout and "complete" in out.stdout


@pytest.mark.usefixtures("prefect_api", "ledger_url")
def test_empty_states_say_so(tmp_path: Path, repo: Path) -> None:  # noqa: F811
    write_spec(tmp_path, "dev", memory_spec(repo, ["api"]))
    assert run("history", "dev", spec_dir=tmp_path).stdout.strip() == "no releases of dev yet"
    assert json.loads(run("history", "dev", "--json", spec_dir=tmp_path).stdout) == []
    assert run("db", "backups", "dev", spec_dir=tmp_path).stdout.strip() == "no backups of dev yet"
    assert run("stats", "dev", spec_dir=tmp_path).stdout.strip() == "no runs of dev in the last 30 days"
    status = run("status", "dev", spec_dir=tmp_path)
    assert status.returncode == 0 and "never deployed" in status.stdout
    out = run("approve", "7b1e5c1e-0000-4000-8000-000000000000", "--as", "ana", "--reason", "x")
    assert out.returncode == 3 and "no flow run 7b1e5c1e-0000-4000-8000-000000000000" in out.stderr
    assert "Traceback" not in out.stderr


def test_plan_prints_the_dag_and_changes_nothing(tmp_path: Path, repo: Path, state_dir: Path) -> None:  # noqa: F811
    spec = memory_spec(repo, ["api", "web"], depends={"web": ["api"]})
    spec["warmup"] = {"requests": [{"service": "web", "path": "/", "repeat": 2}]}
    write_spec(tmp_path, "dev", spec)
    out = run("plan", "dev", "--ref", "v2", spec_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    v2 = sha(repo, "v2")[:12]
    assert "Plan for dev @ v2" in text and f"commit {v2}" in text
    order = [text.index(s) for s in ("layer 1", "- api [memory] (none) → " + v2, "layer 2", "- web [memory]",
                                     "warm-up: 2 request(s)", "validation in stages",
                                     "stage 1 functional: check-api [sleep], check-web [sleep] (parallel)")]
    assert order == sorted(order)
    assert "on failure: rollback subflow" in text
    assert not (state_dir / "artifacts").exists()


@pytest.mark.usefixtures("prefect_api", "ledger_url")
def test_deploy_exit_codes_history_and_status(tmp_path: Path, repo: Path, state_dir: Path) -> None:  # noqa: F811
    write_spec(tmp_path, "dev", memory_spec(repo, ["api"], check_outcome="FAILED"))
    first = run("deploy", "dev", "--ref", "v1", "--json", spec_dir=tmp_path)
    assert first.returncode == 5, first.stdout + first.stderr  # failed, and there was nothing to roll back to
    report = json.loads(first.stdout)
    assert report["outcome"] == "ROLLBACK_FAILED" and "no earlier version to roll back to" in first.stdout
    assert "] deploy services: api …" in first.stderr  # live step progress (plain lines when not a terminal)

    write_spec(tmp_path, "dev", memory_spec(repo, ["api"], check_outcome="PASSED"))
    ok = run("deploy", "dev", "--ref", "v1", spec_dir=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Deploy dev @ v1 → SUCCEEDED" in ok.stdout and "check-api" in ok.stdout  # rendered for a terminal
    assert "] deploy services: api: ok in " in ok.stderr

    hist = run("history", "dev", spec_dir=tmp_path)
    assert "succeeded" in hist.stdout and "rollback_failed" in hist.stdout
    rows = json.loads(run("history", "dev", "--json", spec_dir=tmp_path).stdout)
    assert [r["status"] for r in rows] == ["succeeded", "rollback_failed"]
    assert all(r["started_by"] and r["duration_s"] is not None and r["run_url"] for r in rows)
    assert "validation failed: check-api" in str(rows[1]["reason"]) and rows[0]["reason"] is None
    status = run("status", "dev", spec_dir=tmp_path)
    assert f"serving (last good): v1 {sha(repo, 'v1')[:12]}" in status.stdout
    stats = json.loads(run("stats", "dev", "--json", spec_dir=tmp_path).stdout)
    assert stats["deployments"] == 1 and stats["failures"] == 1 and stats["change_failure_rate"] == 0.5
    assert stats["lead_time_s"] is not None and stats["not_restored"] == 0

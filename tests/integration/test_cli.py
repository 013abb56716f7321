"""The `aevon-deploy` command line: help, plan, deploy exit codes, history and status, as a user runs them."""

from __future__ import annotations

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


@pytest.mark.parametrize("cmd", [[], ["plan"], ["deploy"], ["rollback"], ["history"], ["status"], ["unlock"]])
def test_help_on_every_command(cmd: list[str]) -> None:
    out = run(*cmd, "--help")
    assert out.returncode == 0 and "usage: aevon-deploy" in out.stdout


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
    first = run("deploy", "dev", "--ref", "v1", spec_dir=tmp_path)
    assert first.returncode == 5, first.stdout + first.stderr  # failed, and there was nothing to roll back to
    assert "ROLLBACK_FAILED" in first.stdout and "no earlier version to roll back to" in first.stdout

    write_spec(tmp_path, "dev", memory_spec(repo, ["api"], check_outcome="PASSED"))
    ok = run("deploy", "dev", "--ref", "v1", spec_dir=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "## Deploy dev @ v1 → **SUCCEEDED**" in ok.stdout

    hist = run("history", "dev", spec_dir=tmp_path)
    lines = [ln for ln in hist.stdout.splitlines()[1:] if ln.strip()]
    assert [ln.split()[2] for ln in lines] == ["succeeded", "rollback_failed"]
    status = run("status", "dev", spec_dir=tmp_path)
    assert f"serving (last good): v1 {sha(repo, 'v1')[:12]}" in status.stdout

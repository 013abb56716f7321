"""Helpers for tests that run the real deploy flow: a tagged sample git repo, SHAs of its refs, one deploy call."""

from __future__ import annotations

import subprocess
from pathlib import Path

from flows.deploy import deploy_flow, report_of
from flows.report import DeployReport


def release_repo(path: Path, tags: tuple[str, ...] = ("v1", "v2")) -> Path:
    """A git repo at `path` with one commit per tag (`VERSION` holds the tag), on branch `main`."""
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@aevon.dev"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for tag in tags:
        (path / "VERSION").write_text(tag)
        subprocess.run([*git, "add", "VERSION"], check=True)
        subprocess.run([*git, "commit", "-qm", tag], check=True)
        subprocess.run([*git, "tag", tag], check=True)
    return path


def rev(repo: Path, ref: str) -> str:
    """The commit SHA `ref` names in `repo`."""
    return subprocess.run(["git", "-C", str(repo), "rev-parse", f"{ref}^{{commit}}"], capture_output=True,
                          text=True, check=True).stdout.strip()


async def deploy(spec_dir: Path, ref: str, env: str) -> DeployReport:
    """Run the real deploy flow (a flow run on the session's Prefect server) and return its report."""
    return await report_of(await deploy_flow(env, ref, spec_dir=str(spec_dir), return_state=True))

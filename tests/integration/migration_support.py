"""Helpers for the migration-safety tests: environments over the sample app, derived repos, database probes."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from deployments.spec import DatabaseSpec
from flows.deploy import deploy_flow, report_of
from flows.report import DeployReport
from providers.migrators.base import MigrationStatus, MigratorContext
from providers.migrators.prisma.migrator import PrismaMigrator, make_migrator
from tests.integration.envs import ROOT, sample_dev_spec, write_spec
from tests.pg import fetch
from tests.sample_app import checkout

INIT = "20250101000000_init"
PRIORITY = "20250201000000_task_priority"
AUDIT = "20250301000000_audit_event"
DROP = "20250401000000_drop_session_created_at"
FAILING_CHECK = {"name": "always-fails", "kind": "sleep", "error_retries": 0,
                 "settings": {"seconds": 0.1, "outcome": "FAILED"}}


@dataclass
class Env:
    """One environment of the sample app: its spec (editable), spec folder, app database and state."""

    name: str
    repo: Path
    spec_dir: Path
    db_url: str
    state_dir: Path
    spec: dict[str, Any] = field(default_factory=dict)

    def write(self, **changes: Any) -> None:
        """Write the spec with `changes` applied on a copy: failing=True adds a failing check, backup=..., gates=...,
        database_settings={...}."""
        spec = copy.deepcopy(self.spec)
        if changes.get("failing"):
            spec["validation"]["checks"].append(FAILING_CHECK)
        if "backup" in changes:
            spec["database"]["backup"] = changes["backup"]
        if "gates" in changes:
            spec["gates"] = changes["gates"]
        if "database_settings" in changes:
            spec["database"]["settings"] = changes["database_settings"]
        write_spec(self.spec_dir, self.name, spec)

    async def deploy(self, ref: str, *, allow_destructive: bool = False) -> DeployReport:
        state = await deploy_flow(self.name, ref, allow_destructive=allow_destructive, spec_dir=str(self.spec_dir),
                                  return_state=True)
        return await report_of(state)

    async def checkout(self, ref: str) -> Path:
        return (await checkout(self.repo, ref, self.state_dir / "test-checkouts"))[1]

    def migrator(self) -> PrismaMigrator:
        ctx = MigratorContext(env=self.name, spec=DatabaseSpec(), database_url=SecretStr(self.db_url),
                              state_dir=self.state_dir / "test-migrator")
        return make_migrator(ctx)

    async def status(self, ref: str) -> MigrationStatus:
        return await self.migrator().status(await self.checkout(ref))

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DATABASE_URL": self.db_url}
        return subprocess.run([sys.executable, "-m", "flows.cli", "--spec-dir", str(self.spec_dir), *args],
                              env=env, cwd=ROOT, capture_output=True, text=True, input=stdin, timeout=300,
                              check=False)


def make_env(name: str, repo: Path, spec_dir: Path, db_url: str, state_dir: Path) -> Env:
    """The shipped dev spec, validated by its health checks only (E2E, DAST and perf are tested elsewhere)."""
    spec = sample_dev_spec(repo)
    spec["validation"]["checks"] = [c for c in spec["validation"]["checks"] if c["kind"] == "health"]
    env = Env(name=name, repo=repo, spec_dir=spec_dir, db_url=db_url, state_dir=state_dir, spec=spec)
    env.write()
    return env


async def columns(url: str, table: str) -> list[str]:
    rows = await fetch(url, "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                            "AND table_name = $1", table)
    return sorted(r["column_name"] for r in rows)


async def tables(url: str) -> list[str]:
    rows = await fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return sorted(r["tablename"] for r in rows)


def derive_repo(source: Path, dest: Path, versions: dict[str, tuple[str, dict[str, str]]]) -> Path:
    """A clone of the sample repo with one more commit per tag: tag -> (parent, migrations added: name -> SQL)."""
    subprocess.run(["git", "clone", "--quiet", str(source), str(dest)], check=True)

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(dest), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                       capture_output=True)

    for tag, (parent, migrations) in versions.items():
        git("checkout", "--quiet", "--force", "--detach", parent)
        git("clean", "-fdxq")
        for name, sql in migrations.items():
            folder = dest / "prisma" / "migrations" / name
            folder.mkdir(parents=True)
            (folder / "migration.sql").write_text(sql)
        git("add", "--all")
        git("commit", "--quiet", "-m", f"{tag}: extra migrations")
        git("tag", tag)
    return dest


def step(report: DeployReport, name: str) -> Any:
    found = [s for s in report.steps if s.name == name]
    return found[0] if found else None

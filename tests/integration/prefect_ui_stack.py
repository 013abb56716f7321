"""A real Prefect stack for UI tests: server on PostgreSQL, `flows.serve` deployments, a worker, local-target specs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from providers.targets.local.process import pid_alive, proc_start_time, terminate
from providers.targets.local.target import local_services, stop_all
from tests.approval_keys import make_key
from tests.conftest import free_port
from tests.contract.harness_local import _git, build_app_repo
from tests.integration.envs import ROOT, write_spec
from tests.pg import ADMIN_URL, _with_db

APPROVER = "ana.lead"
# Release tags of the app repo -> the version its /health answers; `main` ends at the last tag's commit.
RELEASES = {"v1.0.0": "1.0.0", "v1.1.0": "1.1.0"}


@dataclass
class Stack:
    """Everything the module fixture starts, and what a test needs to look at it."""

    tmp: Path
    port: int = field(default_factory=free_port)
    suffix: str = field(default_factory=lambda: secrets.token_hex(4))
    app_ports: dict[str, int] = field(default_factory=lambda: {"staging": free_port(), "prod": free_port()})
    shas: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.tmp / "prefect-home"

    @property
    def spec_dir(self) -> Path:
        return self.tmp / "specs"

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    @property
    def repo(self) -> Path:
        return self.tmp / "app-repo"

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.ui}/api"

    @property
    def prefect_db(self) -> str:
        return f"aevon_ui_prefect_{self.suffix}"

    @property
    def ledger_db(self) -> str:
        return f"aevon_ui_ledger_{self.suffix}"

    @property
    def ledger_url(self) -> str:
        return _with_db(ADMIN_URL, self.ledger_db)

    def app_url(self, env: str) -> str:
        """The stable URL of environment `env`'s `api` service (the local target's proxy)."""
        return f"http://127.0.0.1:{self.app_ports[env]}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`aevon-deploy ARGS` in a subprocess with the stack's environment (ledger, specs, Prefect API)."""
        return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=ROOT, env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=120)


def environment_spec(repo: Path, port: int, *, prod: bool) -> dict[str, Any]:
    """One `local` service running the versioned app, a health check; prod adds approval and the promotion rule."""
    spec: dict[str, Any] = {
        "description": "UI test environment (local target, versioned app)",
        "source": {"repo": str(repo)},
        "services": [{
            "name": "api",
            "provider": "local",
            "settings": {"command": ["{python}", "app.py", "--port", "{port}"], "port": port,
                         "health_path": "/health", "startup_timeout_s": 30, "stop_grace_s": 3},
            "ready_timeout_s": 60,
        }],
        "validation": {"checks": [{"name": "api-health", "kind": "health", "service": "api", "error_retries": 0,
                                   "settings": {"endpoints": [{"path": "/health"}]}}]},
    }
    if prod:
        spec["source"]["ref_pattern"] = r"v\d+\.\d+\.\d+"
        spec["approval"] = {"required": True, "timeout_s": 600,
                            "approvers": [{"name": APPROVER, "public_key": approver_key(repo.parent)[1]}]}
        spec["require_staging_pass"] = True
    return spec


def approver_key(tmp: Path) -> tuple[Path, str]:
    """APPROVER's throwaway key pair (made once per stack, under its temporary folder): (private key, public line)."""
    private = tmp / "keys" / "approver"
    if private.exists():
        return private, (tmp / "keys" / "approver.pub").read_text().strip()
    return make_key(tmp / "keys", "approver")


def build_repo(repo: Path) -> dict[str, str]:
    """The app repo: one commit per release, each tagged; returns ref (tags and `main`) -> SHA."""
    shas = build_app_repo(repo, [(version, "ok") for version in RELEASES.values()])
    refs = {}
    for tag, version in RELEASES.items():
        _git(repo, "tag", tag, shas[version])
        refs[tag] = shas[version]
    refs["main"] = _git(repo, "rev-parse", "main")
    return refs


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def start_stack(stack: Stack) -> None:
    """Repo, specs, databases, then `flows.serve.serve` (server, pool, limits, `prefect deploy --all`, worker).

    The worker's flow runs inherit its environment, which is why AEVON_* go into os.environ before it starts (the
    caller restores os.environ). The scheduler service is off: the */30 cron of deploy-staging must not start runs
    of its own in the middle of a test.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.serve import serve

    stack.shas = build_repo(stack.repo)
    stack.state_dir.mkdir()
    for env in ("staging", "prod"):
        write_spec(stack.spec_dir, env, environment_spec(stack.repo, stack.app_ports[env], prod=env == "prod"))
    asyncio.run(_admin(f'CREATE DATABASE "{stack.ledger_db}"'))
    stack.env = {
        "AEVON_SPEC_DIR": str(stack.spec_dir),
        "AEVON_STATE_DB_URL": stack.ledger_url,
        "AEVON_STATE_DIR": str(stack.state_dir),
        "PREFECT_API_URL": stack.api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    os.environ.update(stack.env)
    db_url = _with_db(ADMIN_URL, stack.prefect_db).replace("postgresql://", "postgresql+asyncpg://", 1)
    # serve() exports PREFECT_API_URL, but a process that imported prefect already keeps the settings it read then:
    # without this its in-process client (work pool, limits) would talk to an ephemeral server of its own.
    with temporary_settings(updates={PREFECT_API_URL: stack.api}):
        serve(stack.port, db_url, stack.home)


def _pids_of(tmp: Path, *, flow_runs_only: bool) -> list[int]:
    """Live processes that belong to this stack: environment or working directory under `tmp`."""
    needle = str(tmp).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if flow_runs_only:
            mine = needle in environ and b"PREFECT__FLOW_RUN_ID=" in environ
        else:
            mine = needle in environ or cwd.startswith(str(tmp))
        if mine and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _stop_reaping(stack: Stack) -> None:
    """`flows.serve.stop` (worker, then server), reaping them meanwhile.

    This process started both (serve() → Popen), so they turn into zombies of ours when they exit, and a zombie
    still answers `killpg(pid, 0)`: without the reaping, stop_pid would always wait out its whole grace (40 s each).
    """
    from flows.serve import stop

    pids = [int(f.read_text()) for f in (stack.home / "worker.pid", stack.home / f"server-{stack.port}.pid")
            if f.exists()]
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            stop(stack.port, stack.home)
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    while not done.wait(0.1):
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
    if failure:
        raise failure[0]


async def _terminate(pids: list[int]) -> None:
    await asyncio.gather(*(terminate(pid, proc_start_time(pid), grace=5) for pid in pids))


def stop_stack(stack: Stack) -> None:
    """Flow-run processes (a paused one outlives its worker), local services, worker, server, databases.

    Raises:
        AssertionError: a process of this stack was still alive after all that (it is killed first).
    """
    errors: list[BaseException] = []

    def attempt(step: Any, *args: Any) -> None:
        try:
            step(*args)
        except Exception as exc:  # keep going: everything else must still stop
            errors.append(exc)

    attempt(lambda: asyncio.run(_terminate(_pids_of(stack.tmp, flow_runs_only=True))))
    targets = stack.state_dir / "targets"
    for env_dir in sorted(targets.glob("*/*")) if targets.is_dir() else []:
        for service in local_services(env_dir):
            attempt(lambda d=env_dir, s=service: asyncio.run(stop_all(d, s, grace=3)))
    attempt(_stop_reaping, stack)
    left = _pids_of(stack.tmp, flow_runs_only=False)
    if left:
        attempt(lambda: asyncio.run(_terminate(left)))
        errors.append(AssertionError(f"processes left behind by the stack (now killed): {left}"))
    for name in (stack.prefect_db, stack.ledger_db):
        attempt(lambda n=name: asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')))
    if errors:
        raise errors[0]

"""SIGKILL of a deploy at every step boundary, then a re-run (issue 18 item 8): count duplicates, half-done, leftovers.

Each boundary gets an environment of its own: the sample app (api, web) on the `local` target, whose state
(`<state_dir>/local-<service>/state.json`) and service processes outlive a killed deploy the way a vendor's do, its
PostgreSQL database migrated by the real Prisma CLI, and a ledger database. v1 is deployed first (what a rollback
returns to); then a deploy of the boundary's ref runs as a CLI process with the test-only plugin tests/chaos/kill_at.py,
which SIGKILLs it the instant the named report step starts or finishes; then the same ref is deployed again.
After the re-run:
- duplicates: a release with more than one `deploy` instance in a service's state (one vendor deployment per release);
- half-done: a ledger row still `running`; a service not serving what the re-run's outcome says (SUCCEEDED: the
  ref; ROLLED_BACK: v1) or its process gone; `_prisma_migrations` with a failed or unfinished row, a pending one,
  or one the serving release does not know;
- leftovers: a process of the killed run still alive (its session, a recorded child group, or any process holding
  the environment's database URL that is not a serving instance), a Prisma shadow database nobody uses.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from deployments.spec import DatabaseSpec
from flows.report import EXIT_CODES, DeployOutcome
from providers.migrators.base import MigratorContext
from providers.migrators.prisma.migrator import make_migrator
from providers.targets.local.state import StateStore
from providers.targets.local.target import stop_all
from tests.chaos.fault_scenarios import FaultOutcome
from tests.integration.envs import ROOT, sample_dev_spec, write_spec
from tests.integration.flow_env import rev
from tests.pg import fetch, temp_database
from tests.sample_app import checkout

ENV = "dev"
SERVICES = ("api", "web")
GOOD, BAD, BASE = "v2", "v3-broken", "v1"  # v3-broken's api fails its health check: validation rolls it back
# boundary -> (AEVON_CHAOS_KILL_AT, the ref the killed run and the re-run deploy)
BOUNDARIES: dict[str, tuple[str, str]] = {
    **{f"{step}@{when}": (f"{prefix}@{when}", GOOD) for step, prefix in (
        ("gates", "pre-deploy gates"), ("migration plan", "migration plan"), ("migrate", "migrate"),
        ("deploy api", "deploy services: api"), ("deploy web", "deploy services: web"),
        ("warm-up api", "warm-up: api"), ("validation", "validation 1/")) for when in ("started", "finished")},
    "rollback@started": ("rollback@started", BAD),
    "rollback@finished": ("rollback@finished", BAD),
}
SHORT = ("deploy web@started", "rollback@started")  # the suite's form: DB migrated + api changed; a rollback
KILLED = -9
HANG_S = 300.0


@dataclass
class Sweep:
    """Where the sweep runs: the sample repo, the Prefect API and a scratch folder."""

    repo: Path
    api: str
    work: Path


@dataclass
class Boundary:
    """One boundary's environment: spec folder, state folder, app and ledger databases."""

    key: str
    spec_dir: Path
    state_dir: Path
    db_url: str
    ledger_url: str

    def env(self, kill_at: str | None = None) -> dict[str, str]:
        env = {**os.environ, "DATABASE_URL": self.db_url, "AEVON_STATE_DB_URL": self.ledger_url,
               "AEVON_STATE_DIR": str(self.state_dir)}
        env.pop("AEVON_CHAOS_KILL_AT", None)
        if kill_at is not None:
            env["AEVON_PLUGINS"] = "tests.standins,tests.chaos.kill_at"
            env["AEVON_CHAOS_KILL_AT"] = kill_at
        return env


async def cli_deploy(b: Boundary, api: str, ref: str, kill_at: str | None = None) -> tuple[int, int]:
    """Run `aevon-deploy deploy dev --ref REF` as a process of its own session; (exit code, its pid)."""
    env = {**b.env(kill_at), "PREFECT_API_URL": api}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flows.cli", "--spec-dir", str(b.spec_dir), "deploy", ENV, "--ref", ref,
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
    try:
        async with asyncio.timeout(HANG_S):
            return await proc.wait(), proc.pid
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@asynccontextmanager
async def boundary_env(sweep: Sweep, key: str) -> AsyncIterator[Boundary]:
    """A fresh environment for one boundary (databases dropped and services stopped at the end)."""
    folder = sweep.work / key.replace(" ", "-").replace("@", "-")
    async with temp_database() as db_url, temp_database() as ledger_url:
        b = Boundary(key, folder / "specs", folder / "state", db_url, ledger_url)
        b.state_dir.mkdir(parents=True)
        spec = sample_dev_spec(sweep.repo)
        spec["validation"]["checks"] = [c for c in spec["validation"]["checks"] if c["kind"] == "health"]
        write_spec(b.spec_dir, ENV, spec)
        try:
            yield b
        finally:
            for svc in SERVICES:
                await stop_all(b.state_dir / "targets" / ENV / svc, svc, grace=2)


def _outcome(code: int) -> str:
    if code == KILLED:
        return "killed"
    names = [o.value for o, c in EXIT_CODES.items() if c == code]
    return names[0] if names else f"exit {code}"


async def sweep_boundary(sweep: Sweep, key: str, out: FaultOutcome) -> None:
    """Baseline v1, the killed deploy, the re-run, then the count."""
    kill_at, ref = BOUNDARIES[key]
    before = (out.duplicates, out.half_done, out.leftovers)
    async with boundary_env(sweep, key) as b:
        code, _ = await cli_deploy(b, sweep.api, BASE)
        if code != 0:
            raise AssertionError(f"{key}: the baseline deploy of {BASE} ended {_outcome(code)}")
        shadows_before = set(await _shadow_databases(b.db_url))
        killed, killed_pid = await cli_deploy(b, sweep.api, ref, kill_at)
        code = killed
        out.runs += 1
        out.outcomes[f"killed at {key}" if code == KILLED else f"NOT killed ({_outcome(code)}) at {key}"] += 1
        if code != KILLED:
            out.half_done += 1  # the boundary was never reached: the sweep did not test it
            out.notes.append(f"{key}: the step boundary was not reached (the run ended {_outcome(code)})")
        code, _ = await cli_deploy(b, sweep.api, ref)
        out.runs += 1
        outcome = _outcome(code)
        out.outcomes[f"re-run {outcome}"] += 1
        expected = {GOOD: DeployOutcome.SUCCEEDED.value, BAD: DeployOutcome.ROLLED_BACK.value}[ref]
        if outcome != expected:
            out.half_done += 1
            out.notes.append(f"{key}: the re-run ended {outcome}, expected {expected}")
        serving_ref = ref if outcome == DeployOutcome.SUCCEEDED.value else BASE
        await _judge(sweep, b, killed_pid, serving_ref, shadows_before, out)
    d, h, left = (now - was for now, was in zip((out.duplicates, out.half_done, out.leftovers), before, strict=True))
    out.notes.append(f"{key:28} killed {'yes' if killed == KILLED else 'NO'}, re-run {outcome}: duplicates {d}  "
                     f"half-done {h}  leftovers {left}")  # one line per boundary under the scenario's figures


async def _judge(sweep: Sweep, b: Boundary, killed_pid: int, serving_ref: str, shadows_before: set[str],
                 out: FaultOutcome) -> None:
    key = b.key
    targets = b.state_dir / "targets" / ENV
    sha = rev(sweep.repo, serving_ref)
    serving_pids: set[int] = set()
    for svc in SERVICES:
        st = StateStore(targets / svc / f"local-{svc}", svc).load()
        made = Counter(i.release_id for i in st.instances.values() if i.kind == "deploy")
        for release, n in made.items():
            if n > 1:
                out.duplicates += n - 1
                out.notes.append(f"{key}: {svc} has {n} deployments of {release}")
        live = [i for i in (st.get(st.active), st.get(st.standby)) if i is not None and i.pid]
        serving_pids.update(i.pid for i in live if i.pid)
        active = st.get(st.active)
        if active is None or active.sha != sha or not _alive(active.pid):
            out.half_done += 1
            out.notes.append(f"{key}: {svc} serves {active.sha[:8] if active else 'nothing'}"
                             f"{'' if active and _alive(active.pid) else ' (process gone)'}, expected {serving_ref}")
    running = await fetch(b.ledger_url, "SELECT release_id FROM aevon_releases WHERE status = 'running'")
    if running:
        out.half_done += 1
        out.notes.append(f"{key}: ledger rows still running: {', '.join(r['release_id'] for r in running)}")
    problems = await _database_problems(sweep.repo, b, serving_ref)
    if problems:
        out.half_done += 1
        out.notes.append(f"{key}: database: {problems}")
    left = _processes_left(killed_pid, b, serving_pids)
    left += [f"shadow database {n}" for n in set(await _shadow_databases(b.db_url)) - shadows_before]
    left += [f"recorded child group {p.stem}" for p in (b.state_dir / "process-groups" / ENV).glob("*.pgid")
             if _alive(int(p.stem))]
    if left:
        out.leftovers += len(left)
        out.notes.append(f"{key}: left behind: {'; '.join(left)}")


async def _database_problems(repo: Path, b: Boundary, ref: str) -> str:
    migrator = make_migrator(MigratorContext(env=ENV, spec=DatabaseSpec(), database_url=SecretStr(b.db_url),
                                             state_dir=b.state_dir / "sweep-migrator"))
    _, root = await checkout(repo, ref, b.state_dir / "sweep-checkouts")
    status = await migrator.status(root)
    unfinished = await fetch(b.db_url, 'SELECT migration_name FROM "_prisma_migrations" '
                                       "WHERE finished_at IS NULL AND rolled_back_at IS NULL")
    said = [f"{k} {v}" for k, v in (("failed", status.failed), ("pending", status.pending),
                                    ("unknown", status.unknown)) if v]
    if unfinished:
        said.append(f"unfinished rows {[r['migration_name'] for r in unfinished]}")
    return "; ".join(said)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _processes_left(killed_pid: int, b: Boundary, serving: set[int]) -> list[str]:
    """Processes of the killed run's session, and any process holding this environment's database URL (the Prisma
    CLI, a service instance) other than the instances serving now."""
    marker = b.db_url.rsplit("/", 1)[1].encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in serving or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            sid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[4])
            holds = marker in (entry / "environ").read_bytes()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:80]
        except (OSError, IndexError, ValueError):
            continue
        if (sid == killed_pid or holds) and _alive(pid):
            found.append(f"process {pid} ({cmd})")
    return found


async def _shadow_databases(url: str) -> list[str]:
    rows = await fetch(url, "SELECT datname FROM pg_database d WHERE datname LIKE 'prisma_migrate_shadow_db_%' "
                            "AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)")
    return [str(r["datname"]) for r in rows]


async def kill_sweep(sweep: Sweep, keys: list[str] | None = None) -> FaultOutcome:
    """Every boundary of `keys` (default: all), one after the other."""
    out = FaultOutcome("SIGKILL at each step boundary")
    for key in keys or list(BOUNDARIES):
        await sweep_boundary(sweep, key, out)
    return out

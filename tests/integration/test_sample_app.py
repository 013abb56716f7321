"""The sample target app: its tagged repository, its migrations (real Prisma) and its api/web roles running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from deployments.spec import DatabaseSpec
from providers.migrators.base import MigratorContext
from providers.migrators.prisma.migrator import PrismaMigrator, make_migrator
from tests.pg import fetch, temp_database
from tests.sample_app import MAKE_REPO, build_sample_repo, checkout, ensure_prisma_toolkit, run_app

pytestmark = pytest.mark.slow

INIT = "20250101000000_init"
PRIORITY = "20250201000000_task_priority"
AUDIT = "20250301000000_audit_event"
DEMO = {"email": "demo@aevon.dev", "password": "demo-password"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_prisma_toolkit()
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "repo")


def migrator(url: str, tmp: Path) -> PrismaMigrator:
    return make_migrator(MigratorContext("dev", DatabaseSpec(), SecretStr(url), tmp / "state"))


async def login(client: httpx.AsyncClient, prefix: str = "") -> dict[str, str]:
    res = await client.post(f"{prefix}/auth/login", json=DEMO)
    assert res.status_code == 200, res.text
    return {"Authorization": f"Bearer {res.json()['token']}"}


def test_make_repo_is_deterministic_and_idempotent(repo: Path, tmp_path: Path) -> None:
    tags = subprocess.run(["git", "-C", str(repo), "tag", "--list"], capture_output=True, text=True, check=True)
    assert {"v1", "v2", "v3-broken", "bad-slow", "bad-errors"} <= set(tags.stdout.split())  # + one per gate
    again = subprocess.run([sys.executable, str(MAKE_REPO), str(repo)], capture_output=True, text=True, check=True)
    assert again.stdout.startswith("up to date")
    other = build_sample_repo(tmp_path / "other")

    def shas(path: Path) -> str:
        return subprocess.run(["git", "-C", str(path), "show-ref", "--tags", "--heads"], capture_output=True,
                              text=True, check=True).stdout

    assert shas(other) == shas(repo)
    main_is_v2 = subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", "v2", "main"], check=False)
    assert main_is_v2.returncode == 0
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("not a sample repo")
    refused = subprocess.run([sys.executable, str(MAKE_REPO), str(tmp_path / "foreign")], capture_output=True)
    assert refused.returncode != 0 and (tmp_path / "foreign" / "keep.txt").exists()


async def test_v1_health_login_tasks_workflows(repo: Path, tmp_path: Path) -> None:
    sha, v1 = await checkout(repo, "v1", tmp_path / "cache")
    async with temp_database() as url:
        env = {"DATABASE_URL": url, "AEVON_RELEASE_SHA": sha}
        async with run_app(v1, "api", env, log=tmp_path / "api.log") as base, httpx.AsyncClient(base_url=base) as c:
            unmigrated = await c.get("/health")
            assert unmigrated.status_code == 503

            assert (await migrator(url, tmp_path).apply(v1)).applied == [INIT]
            health = await c.get("/health")
            assert health.status_code == 200, health.text
            assert health.json() == {"status": "ok", "version": "1.0.0", "sha": sha}
            status = (await c.get("/status")).json()
            assert status["migrations"] == {"applied": 1, "expected": 1}

            assert (await c.post("/auth/login", json={**DEMO, "password": "wrong"})).status_code == 401
            assert (await c.get("/tasks")).status_code == 401
            auth = await login(c)
            created = await c.post("/tasks", json={"title": "Write the runbook"}, headers=auth)
            assert created.status_code == 201, created.text
            assert (await c.post("/tasks", json={"title": ""}, headers=auth)).status_code == 422
            tasks = (await c.get("/tasks", headers=auth)).json()["tasks"]
            assert [t["title"] for t in tasks] == ["Write the runbook"]

            run = await c.post("/workflows/trigger", json={"name": "digest", "taskId": tasks[0]["id"]}, headers=auth)
            assert run.status_code == 201, run.text
            assert run.json()["status"] == "queued" and run.json()["taskId"] == tasks[0]["id"]
            rows = await fetch(url, 'SELECT "name", "status" FROM "WorkflowRun"')
            assert [(r["name"], r["status"]) for r in rows] == [("digest", "queued")]
            missing = await c.post("/workflows/trigger", json={"name": "x", "taskId": 999}, headers=auth)
            assert missing.status_code == 404


async def test_v2_upgrade_priority_and_web_proxy(repo: Path, tmp_path: Path) -> None:
    _, v1 = await checkout(repo, "v1", tmp_path / "cache")
    sha, v2 = await checkout(repo, "v2", tmp_path / "cache")
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        await m.apply(v1)
        env = {"DATABASE_URL": url, "AEVON_RELEASE_SHA": sha}
        async with run_app(v2, "api", env, log=tmp_path / "api.log") as api, httpx.AsyncClient(base_url=api) as c:
            behind = await c.get("/health")
            assert behind.status_code == 503 and PRIORITY in behind.text  # code ahead of its migration
            assert (await m.apply(v2)).applied == [PRIORITY]
            assert (await c.get("/health")).json()["version"] == "1.1.0"

            auth = await login(c)
            for title, priority in (("later", "low"), ("now", "high"), ("default", None)):
                body = {"title": title} | ({"priority": priority} if priority else {})
                assert (await c.post("/tasks", json=body, headers=auth)).status_code == 201
            bad = await c.post("/tasks", json={"title": "x", "priority": "urgent"}, headers=auth)
            assert bad.status_code == 422
            tasks = (await c.get("/tasks", headers=auth)).json()["tasks"]
            assert [(t["title"], t["priority"]) for t in tasks] == [("now", "high"), ("default", "normal"),
                                                                    ("later", "low")]

            web_env = {"API_URL": api, "AEVON_RELEASE_SHA": sha}
            async with run_app(v2, "web", web_env, log=tmp_path / "web.log") as web, \
                    httpx.AsyncClient(base_url=web) as w:
                page = await w.get("/")
                assert page.status_code == 200
                for marker in ('id="login-email"', 'id="task-title"', 'id="task-priority"', 'id="workflow-trigger"',
                               "1.1.0", sha):
                    assert marker in page.text
                assert (await w.get("/static/app.js")).status_code == 200
                proxied = await login(w, "/api")
                listed = await w.get("/api/tasks", headers=proxied)
                assert [t["title"] for t in listed.json()["tasks"]] == ["now", "default", "later"]
                assert (await w.get("/api//example.com/tasks")).status_code == 404  # stays on API_URL


async def test_v3_broken_starts_but_fails_health(repo: Path, tmp_path: Path) -> None:
    _, v2 = await checkout(repo, "v2", tmp_path / "cache")
    sha, v3 = await checkout(repo, "v3-broken", tmp_path / "cache")
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        await m.apply(v2)
        assert (await m.apply(v3)).applied == [AUDIT]
        env = {"DATABASE_URL": url, "AEVON_RELEASE_SHA": sha}
        async with run_app(v3, "api", env, log=tmp_path / "api.log") as api, httpx.AsyncClient(base_url=api) as c:
            health = await c.get("/health")
            assert health.status_code == 503
            assert health.json()["version"] == "1.2.0" and "actorId" in health.text
            status = await c.get("/status")
            assert status.status_code == 200 and status.json()["migrations"] == {"applied": 3, "expected": 3}
            auth = await login(c)
            assert (await c.post("/tasks", json={"title": "audited"}, headers=auth)).status_code == 201
            events = await fetch(url, 'SELECT "kind" FROM "AuditEvent"')
            assert [e["kind"] for e in events] == ["task.created"]

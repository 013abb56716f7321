"""Evidence opens from the Prefect UI: the server of `<state_dir>/artifacts/` (flows/evidence.py) answers the evidence
artifact's links with the file and its type, refuses traversal and listings, and `make stop`'s path stops it."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows import evidence
from flows.deploy import deploy_flow, report_of
from flows.report import DeployOutcome, DeployReport
from tests.conftest import free_port
from tests.integration.envs import ROOT, memory_spec, write_spec
from tests.integration.evidence_check import PLUGINS, artifact_file, png
from tests.integration.flow_env import release_repo


def raw_get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """A request with the path sent as written (httpx would remove `..` segments before sending)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """An in-process evidence server of tmp/state/artifacts; a secret file sits beside artifacts/."""
    state = tmp_path / "state"
    root = state / "artifacts"
    (root / "dev" / "r1").mkdir(parents=True)
    (state / "secret.txt").write_text("not evidence")
    server = evidence.make_server(root, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("name", "body", "ctype"), [
    ("shot.png", png(), "image/png"),
    ("report.html", b"<html><body>scan</body></html>", "text/html; charset=utf-8"),
    ("findings.json", b'{"findings": []}', "application/json"),
    ("notes.txt", b"plain", "text/plain; charset=utf-8"),
    ("my shot (1).png", png(4, 4), "image/png"),
])
def test_files_are_served_with_their_type(served: tuple[Path, int], name: str, body: bytes, ctype: str) -> None:
    root, port = served
    (root / "dev" / "r1" / name).write_bytes(body)
    res = httpx.get(f"{evidence.evidence_url(port)}/dev/r1/{name}")
    assert (res.status_code, res.headers["content-type"], res.content) == (200, ctype, body)
    assert res.headers["x-content-type-options"] == "nosniff"
    status, headers, head_body = raw_get(port, "/dev/r1/" + name.replace(" ", "%20"), "HEAD")
    assert (status, headers["content-length"], head_body) == (200, str(len(body)), b"")


@pytest.mark.parametrize("path", ["/../secret.txt", "/dev/../../secret.txt", "/%2e%2e/secret.txt",
                                  "/dev/r1/..%2f..%2f..%2fsecret.txt", "/dev/r1/%00.png", "/./dev/r1/a.txt",
                                  "//etc/passwd", "/dev/r1/a.txt/", "/", "/dev", "/dev/r1/", "/dev/r1/missing.png",
                                  "/link/secret.txt", "/dev/r1/..\\..\\..\\secret.txt"])
def test_traversal_listings_and_missing_files_are_refused(served: tuple[Path, int], path: str) -> None:
    root, port = served
    (root / "dev" / "r1" / "a.txt").write_text("evidence")
    (root / "link").symlink_to(root.parent)  # a link out of artifacts/
    status, _, body = raw_get(port, path)
    assert status == 404, (path, body[:200])
    assert b"not evidence" not in body and b"a.txt" not in body


def test_read_only(served: tuple[Path, int]) -> None:
    root, port = served
    (root / "dev" / "r1" / "a.txt").write_text("evidence")
    for method in ("PUT", "POST", "DELETE"):
        assert raw_get(port, "/dev/r1/a.txt", method)[0] == 501
    assert (root / "dev" / "r1" / "a.txt").read_text() == "evidence"


def test_started_detached_on_loopback_and_stopped_by_make_stop(tmp_path: Path) -> None:
    """`python -m flows.evidence start` (make demo), then `python -m flows.serve stop` (make stop) stops it."""
    state, home, port = tmp_path / "state", tmp_path / "home", free_port()
    (state / "artifacts").mkdir(parents=True)
    (state / "artifacts" / "a.json").write_text("{}")
    env = {**os.environ, "AEVON_STATE_DIR": str(state)}
    cmd = [sys.executable, "-m", "flows.evidence", "start", "--port", str(port), "--home", str(home)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert f"AEVON_EVIDENCE_URL=http://127.0.0.1:{port}" in out.stdout
    pid = int((home / "evidence.pid").read_text().split()[0])
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/a.json").status_code == 200
        again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert again.returncode == 0 and int((home / "evidence.pid").read_text().split()[0]) == pid  # kept
        listen = [line for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                  if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"]
        assert [line.split()[1] for line in listen] == [f"0100007F:{port:04X}"]  # 127.0.0.1 only
    finally:
        stop = subprocess.run([sys.executable, "-m", "flows.serve", "stop", "--port", str(free_port()),
                               "--home", str(home)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
    assert stop.returncode == 0, stop.stderr
    assert not (home / "evidence.pid").exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/a.json")


async def deploy(spec_dir: Path, ref: str) -> DeployReport:
    return await report_of(await deploy_flow("dev", ref, spec_dir=str(spec_dir), return_state=True))


def screenshot_spec(repo: Path, world: str) -> dict[str, Any]:
    """One memory service, its sleep check and a screenshot check that fails (evidence is kept on failure)."""
    spec: dict[str, Any] = memory_spec(repo, ["api"], world=world)
    spec["validation"]["checks"].append({"name": "e2e-shot", "kind": "screenshot", "service": "api",
                                         "error_retries": 0, "settings": {"outcome": "FAILED"}})
    return spec


@pytest.mark.usefixtures("prefect_api", "ledger_url")
async def test_evidence_artifact_links_open_through_the_server(tmp_path: Path, state_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A real flow run whose check takes a screenshot: the evidence artifact links it by HTTP, and it opens."""
    port, home = free_port(), tmp_path / "home"
    evidence.start(state_dir, port, home)
    try:
        monkeypatch.setenv("AEVON_EVIDENCE_URL", evidence.evidence_url(port))
        monkeypatch.setenv("AEVON_PLUGINS", PLUGINS)
        repo = release_repo(tmp_path / "repo")
        write_spec(tmp_path / "specs", "dev", screenshot_spec(repo, f"evidence-{tmp_path.name}"))
        report = await deploy(tmp_path / "specs", "v1")
        assert report.outcome == DeployOutcome.ROLLBACK_FAILED and report.flow_run_id  # nothing to roll back to
        assert report.release_id is not None
        async with get_client() as client:
            arts = await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[report.flow_run_id])))
        [art] = [a for a in arts if a.key == "evidence-dev"]
        text = str(art.data)
        base = re.escape(evidence.evidence_url(port))
        [image] = re.findall(rf"!\[screenshot\]\(({base}/[^)]+)\)", text)
        [link] = re.findall(rf"\[report\]\(({base}/[^)]+)\)", text)
        assert "file://" not in text and "data:" not in text
        async with httpx.AsyncClient(timeout=10) as http:
            shot, rep = await http.get(image), await http.get(link)
        assert (shot.status_code, shot.headers["content-type"]) == (200, "image/png")
        assert shot.content == artifact_file(state_dir, report.release_id, "screen.png").read_bytes() == png()
        assert (rep.status_code, rep.headers["content-type"]) == (200, "application/json")
        assert report.release_id in rep.text
        assert raw_get(port, "/../" + state_dir.name + "/artifacts/" + image.rsplit("/artifacts/", 1)[-1])[0] == 404
    finally:
        assert evidence.stop(home)


def test_serve_starts_it_for_the_worker_unless_the_operator_serves_evidence(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """flows.serve.start_evidence: the URL the worker's runs get (AEVON_EVIDENCE_URL); an operator's own is kept."""
    from flows.serve import start_evidence, stop

    state, home, port = tmp_path / "state", tmp_path / "home", free_port()
    (state / "artifacts").mkdir(parents=True)
    (state / "artifacts" / "a.txt").write_text("evidence")
    monkeypatch.setenv("AEVON_STATE_DIR", str(state))
    monkeypatch.delenv("AEVON_EVIDENCE_URL", raising=False)
    assert start_evidence(None, home) is None and start_evidence(0, home) is None  # not served
    assert not (home / "evidence.pid").exists()
    try:
        assert start_evidence(port, home) == evidence.evidence_url(port)
        assert httpx.get(f"{evidence.evidence_url(port)}/a.txt").text == "evidence"
        monkeypatch.setenv("AEVON_EVIDENCE_URL", "https://evidence.example.org/aevon")
        assert start_evidence(free_port(), home) == "https://evidence.example.org/aevon"  # theirs, nothing started
        assert int((home / "evidence.pid").read_text().split()[1]) == port
    finally:
        stop(free_port(), home)
    assert not (home / "evidence.pid").exists()

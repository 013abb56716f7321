"""The worker image's entrypoint runs a flow run from a plain Python environment against a local Prefect server.

No Docker daemon runs here, so the image itself is not built: the test builds what the Dockerfile builds (a fresh
venv with `pip install .` of this project, through uv from its local cache), then runs deployments/k8s/entrypoint.sh
the way the Kubernetes Job does (no command: `prefect flow-run execute`, PREFECT__FLOW_RUN_ID in the environment).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deployments" / "k8s" / "entrypoint.sh"
SMOKE = '''"""A flow the image runs: it imports the aevon-deploy package and records which Python ran it."""
import os
import sys
from pathlib import Path

from prefect import flow

import flows.deploy  # noqa: F401 - the package's deploy flow imports in this environment


@flow(name="aevon-image-smoke")
def smoke() -> None:
    Path(os.environ["AEVON_STATE_DIR"], "ran-by").write_text(sys.prefix + "\\n" + flows.deploy.__file__)
'''


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("image") / "venv"
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "venv", "-q", str(venv)], check=True)
    subprocess.run([str(uv), "pip", "install", "-q", "--offline", "--python", str(venv / "bin" / "python"),
                    str(ROOT)], check=True)
    return venv


def run_entrypoint(venv: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": env["AEVON_HOME"],
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # nothing of this process's environment, no PYTHONPATH
    return subprocess.run(["/bin/sh", str(ENTRYPOINT)], env={**base, **env}, capture_output=True, text=True,
                          timeout=300, check=False)


async def test_the_entrypoint_executes_a_deployment_flow_run_from_a_plain_venv(
    plain_venv: Path, prefect_api: str, tmp_path: Path
) -> None:
    home, state = tmp_path / "app", tmp_path / "state"
    home.mkdir()
    (home / "smoke.py").write_text(SMOKE)
    async with get_client() as client:
        flow_id = await client.create_flow_from_name("aevon-image-smoke")
        deployment_id = await client.create_deployment(
            flow_id=flow_id, name=f"image-smoke-{tmp_path.name}", entrypoint="smoke.py:smoke",
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(home)}}])
        run = await client.create_flow_run_from_deployment(deployment_id)

    out = run_entrypoint(plain_venv, {"PREFECT_API_URL": prefect_api, "PREFECT__FLOW_RUN_ID": str(run.id),
                                      "AEVON_HOME": str(home), "AEVON_STATE_DIR": str(state)})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    prefix, module = (state / "ran-by").read_text().splitlines()
    assert Path(prefix).resolve() == plain_venv.resolve()
    assert Path(module).is_relative_to(plain_venv)  # the installed package, not this checkout
    async with get_client() as client:
        done = await client.read_flow_run(run.id)
    assert done.state is not None and done.state.is_completed(), done.state


def test_the_entrypoint_refuses_to_start_without_the_api_url(plain_venv: Path, tmp_path: Path) -> None:
    out = run_entrypoint(plain_venv, {"AEVON_HOME": str(tmp_path), "AEVON_STATE_DIR": str(tmp_path / "s")})
    assert out.returncode == 64 and "PREFECT_API_URL is not set" in out.stderr
    assert not (tmp_path / "s").exists()  # refused before any side effect
    missing = run_entrypoint(plain_venv, {"PREFECT_API_URL": "http://127.0.0.1:9/api",
                                          "AEVON_HOME": str(tmp_path / "nowhere")})
    assert missing.returncode == 64 and "is not a directory" in missing.stderr
    assert os.access(ENTRYPOINT, os.X_OK)

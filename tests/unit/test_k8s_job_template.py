"""The Kubernetes work pool's base job template renders with our job variables through Prefect's own functions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml
from prefect.client.orchestration import PrefectClient
from prefect.utilities.templating import apply_values
from prefect.workers.base import BaseJobConfiguration

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deployments" / "k8s" / "base-job-template.json"
IMAGE = "europe-west1-docker.pkg.dev/aevon-ops/tools/aevon-deploy"


def render(values: dict[str, Any]) -> dict[str, Any]:
    """The job configuration a worker builds: variable defaults merged with `values`, then `apply_values`
    (what BaseJobConfiguration.from_template_and_values does before the Kubernetes-specific model)."""
    template = json.loads(TEMPLATE.read_text())
    variables = BaseJobConfiguration._get_base_config_defaults(template["variables"]["properties"])
    variables.update(values)
    rendered: dict[str, Any] = apply_values(template["job_configuration"], variables)
    return rendered


def test_the_job_renders_with_our_variables() -> None:
    job = render({"name": "deploy-staging-gke-abc", "image": f"{IMAGE}:0123456789ab",
                  "command": "prefect flow-run execute", "env": {"AEVON_STATE_DIR": "/var/lib/aevon",
                                                                 "PREFECT_LOGGING_LEVEL": "INFO"}})
    manifest = job["job_manifest"]
    [container] = manifest["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{IMAGE}:0123456789ab"
    assert container["args"] == "prefect flow-run execute"
    assert container["env"] == {"AEVON_STATE_DIR": "/var/lib/aevon", "PREFECT_LOGGING_LEVEL": "INFO"}
    assert container["envFrom"] == [{"secretRef": {"name": "aevon-deploy-secrets"}}]
    assert manifest["metadata"] == {"generateName": "deploy-staging-gke-abc-", "labels": {"app": "aevon-deploy"},
                                    "namespace": "aevon-deploy"}
    spec = manifest["spec"]
    assert spec["ttlSecondsAfterFinished"] == 3600 and spec["backoffLimit"] == 0  # whole-value: typed, not text
    assert spec["template"]["spec"]["serviceAccountName"] == "aevon-deploy"
    assert job["pod_watch_timeout_seconds"] == 300 and job["stream_output"] is True
    assert "{{" not in json.dumps(job)  # every placeholder filled (job_watch_timeout_seconds: no default, removed)


def test_the_generic_configuration_validates_the_rendered_fields() -> None:
    template = json.loads(TEMPLATE.read_text())
    # a client that is never called (the template references no blocks or variables): no server starts
    unused = PrefectClient("http://127.0.0.1:9/api")
    config = asyncio.run(BaseJobConfiguration.from_template_and_values(
        template, {"name": "run-1", "env": {"EXTRA": "1"}, "command": "prefect flow-run execute"}, client=unused))
    assert config.env == {"AEVON_STATE_DIR": "/var/lib/aevon", "EXTRA": "1"}  # deployment env merged on defaults
    assert config.labels == {"app": "aevon-deploy"} and config.name == "run-1"


def test_the_gke_deployments_build_push_and_run_the_image_the_template_names() -> None:
    project = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    template = json.loads(TEMPLATE.read_text())
    default = template["variables"]["properties"]["image"]["default"]
    assert default.rsplit(":", 1)[0] == IMAGE
    gke = {d["name"]: d for d in project["deployments"] if d["name"].endswith("-gke")}
    assert set(gke) == {"deploy-staging-gke", "deploy-prod-gke"}
    for d in gke.values():
        build = {k: v for step in d["build"] for k, v in step.items()}
        push = {k: v for step in d["push"] for k, v in step.items()}
        assert build["prefect_docker.deployments.steps.build_docker_image"]["image_name"] == IMAGE
        assert build["prefect_docker.deployments.steps.build_docker_image"]["dockerfile"] == "Dockerfile"
        pushed = push["prefect_docker.deployments.steps.push_docker_image"]
        assert pushed["image_name"] == "{{ build-image.image_name }}"
        assert d["work_pool"]["name"] == "aevon-k8s"
        assert d["work_pool"]["job_variables"]["image"] == "{{ build-image.image }}"
    locals_ = [d for d in project["deployments"] if not d["name"].endswith("-gke")]
    assert all("build" not in d and "push" not in d for d in locals_) and "build" not in project
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "deployments/k8s/entrypoint.sh" in dockerfile and 'CMD ["prefect", "flow-run", "execute"]' in dockerfile

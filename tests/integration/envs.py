"""Build test environments: the dev spec pointed at a temp sample repo, temp database and free ports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def write_spec(spec_dir: Path, env: str, spec: dict[str, Any]) -> Path:
    spec_dir.mkdir(parents=True, exist_ok=True)
    path = spec_dir / f"{env}.yaml"
    path.write_text(yaml.safe_dump({**spec, "environment": env}, sort_keys=False))
    return path


MONITORING_KINDS = {"sentry", "prometheus"}


def sample_dev_spec(repo: Path, *, monitoring: bool = False) -> dict[str, Any]:
    """deployments/dev.yaml as shipped, with the repo replaced and the stable ports made free ones.

    Without `monitoring`, the checks that watch the demo's Sentry stand-in and Prometheus (not running in a test)
    are left out, and so is the services' SENTRY_DSN (the demo's stand-in, on a fixed port).
    """
    spec: dict[str, Any] = yaml.safe_load((ROOT / "deployments" / "dev.yaml").read_text())
    spec["source"]["repo"] = str(repo)
    if not monitoring:
        checks = spec["validation"]["checks"]
        spec["validation"]["checks"] = [c for c in checks if c["kind"] not in MONITORING_KINDS]
        for svc in spec["services"]:
            svc["settings"].get("env", {}).pop("SENTRY_DSN", None)
    ports = {s["name"]: free_port() for s in spec["services"]}
    for svc in spec["services"]:
        svc["settings"]["port"] = ports[svc["name"]]
        env = svc["settings"].get("env", {})
        if "API_URL" in env:
            env["API_URL"] = f"http://127.0.0.1:{ports['api']}"
    return spec


def memory_spec(repo: Path, services: list[str], *, deploy_s: float = 0.2, world: str = "w",
                fail_shas: list[str] | None = None, check_s: float = 0.1, check_outcome: str = "PASSED",
                depends: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """An environment of in-process `memory` services and `sleep` checks (fast DAG tests, bench)."""
    return {
        "source": {"repo": str(repo)},
        "services": [
            {"name": s, "provider": "memory", "depends_on": (depends or {}).get(s, []),
             "settings": {"deploy_s": deploy_s, "world": world, "fail_shas": fail_shas or []}}
            for s in services
        ],
        "validation": {"checks": [
            {"name": f"check-{s}", "kind": "sleep", "service": s, "error_retries": 0,
             "settings": {"seconds": check_s, "outcome": check_outcome}}
            for s in services
        ]},
    }

"""Bench: the validation stage's wall time beside its slowest single check (the parallel ratio), dev checks vs v2.

The sample app's v2 (api + web) runs here over a fresh database migrated by the real Prisma migrator; the checks are
deployments/dev.yaml's `validation.checks` (whatever the spec holds: health, perf smoke, E2E, DAST ...), built
through the registry. After the spec's warm-up, each run measures, side by side:

- the stage as the deploy flow runs it (tasks.validation.run_stage: every check a `run_check` task, gathered,
  then the `exclusive` ones, such as the perf smoke, alone after them), inside one flow run;
- each check alone through the same path (its own flow run); the slowest of these is the floor for the stage.

The ratio stage / slowest is 1.0 for perfect parallelism; above it is what the checks cost each other (they share
2 cores: Chromium and wapiti compete with the app) plus orchestration, plus the exclusive checks' own time, which
is by design (printed apart: the parallel part's ratio to its own slowest check). Medians of `--runs`.

    .venv/bin/python bench/bench_validation.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from prefect import flow  # noqa: E402

from deployments.spec import CheckSpec, EnvironmentSpec  # noqa: E402
from providers.checks.base import VALIDATION, Check, CheckContext, CheckInput  # noqa: E402
from providers.errors import ConfigError  # noqa: E402
from providers.models import CheckResult  # noqa: E402
from providers.registry import CHECKS, resolve  # noqa: E402
from providers.warmup import warm  # noqa: E402
from tasks.validation import run_stage  # noqa: E402


@flow(name="bench-validation-stage")
async def _stage_flow(label: str) -> tuple[float, list[CheckResult]]:
    """The deploy flow's validation step (tasks.validation.run_stage); returns (wall seconds, results)."""
    t0 = time.perf_counter()
    results = await run_stage(_STAGE["pairs"], _STAGE["inp"])
    return time.perf_counter() - t0, results


_STAGE: dict[str, Any] = {}  # what the flow run measures (checks are not flow parameters: not serialisable)


async def stage(pairs: list[tuple[CheckSpec, Check]], inp: CheckInput) -> tuple[float, list[CheckResult]]:
    _STAGE.update(pairs=pairs, inp=inp)
    return await _stage_flow("+".join(s.name for s, _ in pairs))


def _worst_p95(result: CheckResult) -> list[float]:
    values = [v for k, v in result.metrics.items() if result.kind == "perf" and k.endswith(".p95_ms")]
    return [max(values)] if values else []


def build_checks(env: EnvironmentSpec, tmp: Path) -> list[tuple[CheckSpec, Check]]:
    """The spec's validation checks through the registry; a check that cannot be built here is left out (said so)."""
    pairs: list[tuple[CheckSpec, Check]] = []
    for index, spec in enumerate(env.validation.checks):
        if spec.kind in ("sentry", "prometheus"):  # they watch the demo's monitoring stack, not the app under bench
            print(f"# left out {spec.name} ({spec.kind}): watches `make demo`'s monitoring, not this bench's app",
                  flush=True)
            continue
        try:
            factory = resolve(CHECKS, "check kind", spec.kind, f"validation.{spec.name}")
            ctx = CheckContext(env=env, spec=spec, secrets={}, artifacts_dir=tmp / "artifacts",
                               baseline_dir=tmp / "baselines", section=VALIDATION, index=index)
            pairs.append((spec, factory(ctx)))
        except ConfigError as exc:
            print(f"# left out {spec.name} ({spec.kind}): {exc}", flush=True)
    return pairs


async def bench(runs: int) -> int:
    import yaml

    from tests.integration.app_under_test import serving
    from tests.sample_app import build_sample_repo, ensure_prisma_toolkit

    ensure_prisma_toolkit()
    env = EnvironmentSpec.model_validate(yaml.safe_load((ROOT / "deployments" / "dev.yaml").read_text()))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        repo = build_sample_repo(tmp / "repo")
        async with serving(repo, "v2", tmp) as app:
            inp = CheckInput(release=app.release(), services=app.services(), checkout_dir=app.checkout)
            pairs = build_checks(env, tmp)
            w = await warm(env.warmup, inp.services)
            print(f"warmup requests={int(w['requests'])} failed={int(w['failed'])}: wall {w['duration_s']:.2f}s "
                  f"cold {w.get('cold_ms_max', 0):.0f} ms (slowest first call) "
                  f"warm p50 {w.get('warm_p50_ms', 0):.1f} ms", flush=True)
            walls: list[float] = []
            solos: dict[str, list[float]] = {s.name: [] for s, _ in pairs}
            outcomes: dict[str, set[str]] = {s.name: set() for s, _ in pairs}
            p95: dict[str, list[float]] = {"stage": [], "alone": []}  # perf checks' worst p95, with others / alone
            for i in range(runs):
                wall, results = await stage(pairs, inp)
                walls.append(wall)
                for r in results:
                    outcomes[r.name].add(r.outcome.value)
                    p95["stage"] += _worst_p95(r)
                for pair in pairs:
                    solo, [result] = await stage([pair], inp)
                    solos[pair[0].name].append(solo)
                    outcomes[result.name].add(result.outcome.value)
                    p95["alone"] += _worst_p95(result)
                print(f"# run {i + 1}/{runs}: stage {wall:.2f}s, alone: "
                      + ", ".join(f"{n} {v[-1]:.2f}s" for n, v in solos.items()), flush=True)
    med = {n: statistics.median(v) for n, v in solos.items()}
    slowest = max(med, key=lambda n: med[n])
    wall = statistics.median(walls)
    print("per check alone (median): " + ", ".join(f"{n} {v:.2f}s {'/'.join(sorted(outcomes[n]))}"
                                                   for n, v in med.items()))
    print(f"sequential sum (median): {sum(med.values()):.2f}s")
    if p95["stage"] and p95["alone"]:
        print(f"perf smoke worst p95 (median): {statistics.median(p95['stage']):.0f} ms during the stage, "
              f"{statistics.median(p95['alone']):.0f} ms alone")
    excl = [s.name for s, _ in pairs if s.exclusive]
    par = [n for n in med if n not in excl]
    if excl and par:
        par_slowest = max(par, key=lambda n: med[n])
        par_wall = wall - sum(med[n] for n in excl)
        print(f"parallel part checks={len(par)}: about {par_wall:.2f}s (stage minus the exclusive checks alone) "
              f"slowest {med[par_slowest]:.2f}s ({par_slowest}) ratio {par_wall / med[par_slowest]:.2f}; "
              f"exclusive after it: {', '.join(excl)}")
    print(f"validation_parallel checks={len(pairs)}: wall {wall:.2f}s slowest {med[slowest]:.2f}s ({slowest}) "
          f"ratio {wall / med[slowest]:.2f}")
    api = os.environ.get("PREFECT_API_URL") or "ephemeral (no PREFECT_API_URL)"
    print(f"# medians of {runs} runs; Prefect API: {api}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    return asyncio.run(bench(args.runs))


if __name__ == "__main__":
    sys.exit(main())

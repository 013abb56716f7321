"""`aevon-deploy plan`: the DAG a deploy would run, with current → target versions; changes nothing."""

from __future__ import annotations

import asyncio

from flows.runtime import Runtime
from providers.checks.base import CheckInput
from providers.errors import AevonError
from providers.models import CheckResult, Release, ServiceVersion
from providers.source.refs import check_ref


async def render_plan(rt: Runtime, ref: str | None) -> str:
    """Text plan: steps, order, parallel groups, provider per service, versions, gates' outcome now."""
    spec = rt.spec
    lines = [f"Plan for {spec.environment}" + (f" @ {ref}" if ref else "") + f"  (spec: {rt.spec_file})"]
    release: Release | None = None
    if ref:
        sha = await rt.source.resolve(check_ref(spec, ref))  # the rules deploy applies (flows/deploy.py)
        checkout = await rt.source.checkout(sha)
        release = Release(release_id="plan", env=spec.environment, ref=ref, sha=sha, checkout_dir=str(checkout))
        lines[0] += f"  commit {sha[:12]}"
        if spec.source.ref_pattern:
            lines.append(f"  ref rule: must match {spec.source.ref_pattern}")
    current = await _current(rt)
    n = 1
    lines.append(f"{n}. resolve release, lock deploy-{spec.environment} (held to the end), compensate crashed runs")
    n += 1
    if rt.gates:
        lines.append(f"{n}. pre-deploy gates (parallel):")
        results = await _gates(rt, release, current) if release else {}
        for s, _ in rt.gates:
            r = results.get(s.name)
            lines.append(f"     - {s.name} [{s.kind}]" + (f": {r.outcome} {r.summary}" if r else ""))
        n += 1
    if spec.approval.required:
        lines.append(f"{n}. approval gate: {', '.join(spec.approval.names) or 'no approver listed'}"
                     f" (timeout {spec.approval.timeout_s:.0f}s)")
        n += 1
    if rt.migrator is not None and spec.database is not None:
        lines.append(f"{n}. database ({spec.database.provider})" + (": verified backup, then" if spec.database.backup
                                                                    else ":") + " migrate deploy")
        if release and release.checkout_dir:
            lines += await _migrations(rt, release)
        n += 1
    lines.append(f"{n}. services:")
    for i, layer in enumerate(rt.layers, 1):
        lines.append(f"     layer {i} (parallel):")
        for name in layer:
            cur = current.get(name)
            target = release.sha[:12] if release else "?"
            lines.append(f"       - {name} [{rt.spec.service(name).provider}] "
                         f"{cur.version[:12] if cur else '(none)'} → {target}")
    n += 1
    if spec.warmup.requests:
        lines.append(f"{n}. warm-up: {sum(r.repeat for r in spec.warmup.requests)} request(s), "
                     f"{spec.warmup.concurrency} at a time, budget {spec.warmup.budget_s:g}s")
        n += 1
    if rt.checks:
        v = spec.validation
        kinds = {s.name: s for s, _ in rt.checks}
        lines.append(f"{n}. validation in stages, each after the one before passed"
                     + ("; the first failure cancels the rest and rolls back at once:" if v.fail_fast else
                        " (fail_fast off: every check runs to its end):"))
        for i, st in enumerate(v.stage_plan(), 1):
            together = [f"{c} [{kinds[c].kind}]" for c in st.checks if not kinds[c].exclusive]
            alone = [f"{c} [{kinds[c].kind}]" for c in st.checks if kinds[c].exclusive]
            lines.append(f"     stage {i} {st.name}: " + (f"{', '.join(together)} (parallel)" if together else "")
                         + ("; then alone: " if together and alone else "alone: " if alone else "")
                         + ", ".join(alone))
        if v.bake_s:
            lines.append(f"     bake {v.bake_s:g}s: {', '.join(v.baked()) or 'no monitoring check'} "
                         f"repeated every {v.bake_interval_s:g}s; a regression rolls back")
    rb = spec.rollback
    lines.append("on failure: " + ("rollback subflow: services back to their previous versions in reverse order"
                                   + (", inverse migration" if rb.revert_migrations else "")
                                   + (", health re-check" if rb.health_recheck else "")
                                   if rb.automatic else "stop and report (automatic rollback is off)"))
    return "\n".join(lines)


async def _current(rt: Runtime) -> dict[str, ServiceVersion]:
    out: dict[str, ServiceVersion] = {}
    for name, target in rt.targets.items():
        try:
            cur = await target.current()
        except AevonError:
            cur = None
        if cur is not None:
            out[name] = cur
    return out


async def _gates(rt: Runtime, release: Release, current: dict[str, ServiceVersion]) -> dict[str, CheckResult]:
    from pathlib import Path

    inp = CheckInput(release=release, services=current, checkout_dir=Path(str(release.checkout_dir)))
    # a gate never raises: what it could not measure comes back ERROR (providers/checks/base.py)
    results = await asyncio.gather(*(c.run(inp) for _, c in rt.gates))
    return {r.name: r for r in results}


async def _migrations(rt: Runtime, release: Release) -> list[str]:
    from pathlib import Path

    assert rt.migrator is not None
    try:
        plan = await rt.migrator.plan(Path(str(release.checkout_dir)), None)
    except AevonError as exc:
        return [f"     (cannot read migration status: {exc})"]
    out = [f"     pending: {', '.join(plan.pending) or 'none'}"]
    out += [f"     - {f.severity}: {f.message}" + (f" ({f.location})" if f.location else "") for f in plan.findings]
    if plan.destructive:
        out.append("     destructive: refused unless --allow-destructive")
    return out

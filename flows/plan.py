"""`aevon-deploy plan`: the DAG a deploy would run, with current → target versions; changes nothing.

Missing secrets do not stop it: all of them are listed, and the steps that need one are marked and not asked.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel, Field

from deployments.check_graph import check_graph, starts_when
from flows.readonly import ReadOnly, Serving, ask_targets
from providers.checks.base import CheckInput
from providers.errors import AevonError
from providers.models import CheckResult, Release, ServiceVersion
from providers.source.refs import check_ref


class PlannedService(BaseModel):
    """One service of the plan: where it runs, what serves now, what would."""

    name: str
    provider: str
    layer: int
    current: str | None = None  # version serving now (None: nothing deployed, or unreachable)
    unreachable: str | None = None
    target: str | None = None
    needs: list[str] = Field(default_factory=list)  # missing secrets

    def describe_current(self) -> str:
        if self.needs:
            return "not asked"  # its target needs a missing secret; "(none)" would read as never deployed
        if self.unreachable is not None:
            return f"unreachable: {self.unreachable}"
        return self.current[:12] if self.current else "(none)"


class PlannedGate(BaseModel):
    """A pre-deploy gate and its outcome now (run only with --ref and its secrets)."""

    name: str
    kind: str
    outcome: str | None = None
    summary: str = ""
    needs: list[str] = Field(default_factory=list)


class PlannedCheck(BaseModel):
    """A validation check of the plan and when it starts (deployments/check_graph.py)."""

    name: str
    kind: str
    stage: str
    after_services: list[str]  # deployed and warmed up before it starts (every service: a whole-system check)
    after_checks: list[str]  # checks that must pass before it starts
    exclusive: bool = False
    starts: str = ""  # the same in words


class Plan(BaseModel):
    """`plan ENV` as data (`--json`); `lines` is the DAG as text, in order."""

    env: str
    spec_file: str
    ref: str | None = None
    sha: str | None = None
    missing_secrets: dict[str, str] = Field(default_factory=dict)
    gates: list[PlannedGate] = Field(default_factory=list)
    services: list[PlannedService] = Field(default_factory=list)
    checks: list[PlannedCheck] = Field(default_factory=list)
    lines: list[str] = Field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.lines)

    def missing_text(self) -> str | None:
        """Every missing secret at once (a deploy would be refused until they are set), or None."""
        if not self.missing_secrets:
            return None
        return "\n".join([f"{len(self.missing_secrets)} secret(s) missing: a deploy would be refused until set",
                          *(f"  - {msg}" for msg in self.missing_secrets.values())])


def _needs(names: list[str]) -> str:
    return f" (needs secret {', '.join(names)})" if names else ""


async def build_plan(ro: ReadOnly, ref: str | None) -> Plan:
    """Steps, order, parallel groups, provider per service, versions, gates' outcome now, migration findings."""
    rt, spec = ro.rt, ro.rt.spec
    plan = Plan(env=spec.environment, spec_file=str(rt.spec_file), ref=ref, missing_secrets=dict(ro.missing))
    lines = plan.lines
    lines.append(f"Plan for {spec.environment}" + (f" @ {ref}" if ref else "") + f"  (spec: {rt.spec_file})")
    release: Release | None = None
    if ref:
        sha = await rt.source.resolve(check_ref(spec, ref))  # the rules deploy applies (flows/deploy.py)
        checkout = await rt.source.checkout(sha)
        release = Release(release_id="plan", env=spec.environment, ref=ref, sha=sha, checkout_dir=str(checkout))
        plan.sha = sha
        lines[0] += f"  commit {sha[:12]}"
        if spec.source.ref_pattern:
            lines.append(f"  ref rule: must match {spec.source.ref_pattern}")
    serving = await ask_targets(ro)
    current = {n: s.version for n, s in serving.items() if s.version is not None}
    n = 1
    lines.append(f"{n}. resolve release, lock deploy-{spec.environment} (held to the end), compensate crashed runs")
    n += 1
    if rt.gates:
        lines.append(f"{n}. pre-deploy gates (parallel):" + ("" if release else "  (outcome now: plan with --ref)"))
        plan.gates = await _gates(ro, release, current)
        for g in plan.gates:
            lines.append(f"     - {g.name} [{g.kind}]" + (f": {g.outcome} {g.summary}" if g.outcome else "")
                         + _needs(g.needs))
        n += 1
    if spec.approval.required:
        lines.append(f"{n}. approval gate: {', '.join(spec.approval.names) or 'no approver listed'}"
                     f" (timeout {spec.approval.timeout_s:.0f}s)")
        n += 1
    if rt.migrator is not None and spec.database is not None:
        lines.append(f"{n}. database ({spec.database.provider})" + (": verified backup, then" if spec.database.backup
                                                                    else ":") + " migrate deploy"
                     + _needs(ro.database_needs))
        if release and release.checkout_dir and not ro.database_needs:
            lines += await _migrations(ro, release)
        n += 1
    lines.append(f"{n}. services:")
    for i, layer in enumerate(rt.layers, 1):
        lines.append(f"     layer {i} (parallel):")
        for name in layer:
            svc = _service(ro, name, i, serving[name], release)
            plan.services.append(svc)
            lines.append(f"       - {name} [{svc.provider}] {svc.describe_current()} → {svc.target or '?'}"
                         + _needs(svc.needs))
    n += 1
    if spec.warmup.requests:
        lines.append(f"{n}. warm-up: {sum(r.repeat for r in spec.warmup.requests)} request(s), "
                     f"{spec.warmup.concurrency} at a time, budget {spec.warmup.budget_s:g}s")
        n += 1
    if rt.checks:
        lines += _validation(ro, n)
        kinds = {s.name: s.kind for s, _ in rt.checks}
        plan.checks = [PlannedCheck(name=c.name, kind=kinds[c.name], stage=c.stage_name, after_services=list(c.needs),
                                    after_checks=list(c.after), exclusive=c.exclusive,
                                    starts=starts_when(c, len(spec.services))) for c in check_graph(spec)]
    rb = spec.rollback
    lines.append("on failure: " + ("rollback subflow: services back to their previous versions in reverse order"
                                   + ((", inverse migration" if spec.database is None
                                       or spec.database.rollback == "inverse" else
                                       ", migrations kept (database.rollback: code_only)")
                                      if rb.revert_migrations else "")
                                   + (", health re-check" if rb.health_recheck else "")
                                   if rb.automatic else "stop and report (automatic rollback is off)"))
    return plan


def _service(ro: ReadOnly, name: str, layer: int, s: Serving, release: Release | None) -> PlannedService:
    return PlannedService(
        name=name, provider=s.provider, layer=layer, current=s.version.version if s.version else None,
        unreachable=s.unreachable if not ro.service_needs(name) else None,
        target=release.sha[:12] if release else None, needs=ro.service_needs(name),
    )


def _validation(ro: ReadOnly, n: int) -> list[str]:
    v = ro.rt.spec.validation
    kinds = {s.name: s for s, _ in ro.rt.checks}
    nodes = {node.name: node for node in check_graph(ro.rt.spec)}
    count = len(ro.rt.spec.services)

    def label(c: str) -> str:
        return f"{c} [{kinds[c].kind}]" + _needs(ro.needs(kinds[c].secrets))

    lines = [f"{n}. validation in stages, each check as soon as what it observes is deployed and warmed up and the "
             "earlier stages' checks of it passed"
             + ("; the first failure (a check's or a deploy's) cancels the rest, deploys in flight included, and "
                "rolls back at once:" if v.fail_fast else
                " (fail_fast off: every check runs to its end; a failed deploy still stops the rest):")]
    for i, st in enumerate(v.stage_plan(), 1):
        together = [label(c) for c in st.checks if not kinds[c].exclusive]
        alone = [label(c) for c in st.checks if kinds[c].exclusive]
        lines.append(f"     stage {i} {st.name}: " + (f"{', '.join(together)} (parallel)" if together else "")
                     + ("; then alone: " if together and alone else "alone: " if alone else "")
                     + ", ".join(alone))
        lines += [f"       - {c} starts {starts_when(nodes[c], count)}" for c in st.checks]
    if v.bake_s:
        lines.append(f"     bake {v.bake_s:g}s (after every stage passed): "
                     f"{', '.join(v.baked()) or 'no monitoring check'} repeated every {v.bake_interval_s:g}s; "
                     "a regression rolls back")
    return lines


async def _gates(ro: ReadOnly, release: Release | None, current: dict[str, ServiceVersion]) -> list[PlannedGate]:
    out = [PlannedGate(name=s.name, kind=s.kind, needs=ro.needs(s.secrets)) for s, _ in ro.rt.gates]
    if release is None:
        return out
    inp = CheckInput(release=release, services=current, checkout_dir=Path(str(release.checkout_dir)))
    runnable = [(g, c) for g, (_, c) in zip(out, ro.rt.gates, strict=True) if not g.needs]
    # a gate never raises: what it could not measure comes back ERROR (providers/checks/base.py)
    results: list[CheckResult] = list(await asyncio.gather(*(c.run(inp) for _, c in runnable)))
    for (g, _), r in zip(runnable, results, strict=True):
        g.outcome, g.summary = str(r.outcome), r.summary
    return out


async def _migrations(ro: ReadOnly, release: Release) -> list[str]:
    assert ro.rt.migrator is not None
    try:
        plan = await ro.rt.migrator.plan(Path(str(release.checkout_dir)), None)
    except AevonError as exc:
        return [f"     (cannot read migration status: {exc})"]
    out = [f"     pending: {', '.join(plan.pending) or 'none'}"]
    if plan.contract:
        out += [f"     expand phase (before the services): {', '.join(plan.expand) or 'none'}",
                f"     contract phase (after validation): {', '.join(plan.contract)}"]
    out += [f"     - {f.severity}: {f.message}" + (f" ({f.location})" if f.location else "") for f in plan.findings]
    if plan.destructive:
        out.append("     destructive: refused unless --allow-destructive")
    return out


async def render_plan(ro: ReadOnly, ref: str | None) -> str:
    """The plan as text (what `aevon-deploy plan` prints)."""
    return (await build_plan(ro, ref)).text()

"""When each validation check may start: the services it waits for and the earlier checks it follows (pure rules)."""

from __future__ import annotations

from dataclasses import dataclass

from deployments.spec import EnvironmentSpec


@dataclass(frozen=True)
class CheckNode:
    """One validation check in the run's DAG.

    `needs`: the services that must be deployed and warmed up before it starts (its own service; every service
    when it names none or is `exclusive`). `after`: the checks that must have finished first (passed, with fail
    fast): those of earlier stages whose needs overlap its own, and, for an exclusive check, the other checks of
    its stage (the parallel ones and the exclusive ones before it). An exclusive check therefore runs alone: it
    needs everything and every check of a later stage needs something it needs.
    """

    name: str
    stage: int  # 0-based index in the stage plan
    stage_name: str
    service: str | None  # what it observes (None: the whole system)
    needs: tuple[str, ...]
    after: tuple[str, ...]
    exclusive: bool

    @property
    def whole_system(self) -> bool:
        return self.service is None or self.exclusive


def check_graph(spec: EnvironmentSpec) -> list[CheckNode]:
    """The DAG of `spec.validation.checks`, one node per check in spec order (see CheckNode)."""
    everything = tuple(s.name for s in spec.services)
    checks = {c.name: c for c in spec.validation.checks}
    stage_of: dict[str, tuple[int, str]] = {}
    for i, st in enumerate(spec.validation.stage_plan()):
        for name in st.checks:
            stage_of[name] = (i, st.name)
    needs = {c.name: ((c.service,) if c.service is not None and not c.exclusive else everything)
             for c in spec.validation.checks}
    nodes: list[CheckNode] = []
    for c in spec.validation.checks:
        stage, stage_name = stage_of[c.name]
        mine = set(needs[c.name])
        after = [d for d in checks if stage_of[d][0] < stage and mine.intersection(needs[d])]
        if c.exclusive:
            same = [d for d in checks if stage_of[d][0] == stage and d != c.name]
            after += [d for d in same if not checks[d].exclusive]
            earlier = [s.name for s in spec.validation.checks if s.exclusive and stage_of[s.name][0] == stage]
            after += earlier[:earlier.index(c.name)]
        nodes.append(CheckNode(name=c.name, stage=stage, stage_name=stage_name, service=c.service,
                               needs=needs[c.name], after=tuple(after), exclusive=c.exclusive))
    return nodes


def starts_when(node: CheckNode, all_services: int) -> str:
    """`plan`'s words for when `node` starts: after which services and which checks."""
    if node.whole_system or (len(node.needs) == all_services and all_services > 1):
        what = "after all services deployed + warmed"
    else:
        what = f"after {', '.join(node.needs)} deployed + warmed"
    if node.exclusive:
        what = "alone, " + what
    if not node.after:
        return what
    if len(node.after) <= 4:
        return f"{what}, and after {', '.join(node.after)} passed"
    return f"{what}, and after {len(node.after)} checks of earlier stages passed"

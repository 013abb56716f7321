"""When each validation check starts (deployments/check_graph.py): its services, the earlier checks it follows."""

from __future__ import annotations

from typing import Any

from deployments.check_graph import check_graph, starts_when
from deployments.spec import EnvironmentSpec


def spec(checks: list[dict[str, Any]], stages: list[dict[str, Any]] | None = None) -> EnvironmentSpec:
    return EnvironmentSpec.model_validate({
        "environment": "dev", "source": {"repo": "."},
        "services": [{"name": n, "provider": "memory"} for n in ("api", "web", "worker")],
        "validation": {"checks": checks, **({"stages": stages} if stages else {})},
    })


def chk(name: str, kind: str, service: str | None = None, **kw: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, **({"service": service} if service else {}), **kw}


def test_default_stages_per_service_until_a_whole_system_check() -> None:
    nodes = {n.name: n for n in check_graph(spec([
        chk("api-health", "health", "api"), chk("web-health", "health", "web"),
        chk("web-dast", "dast", "web"), chk("e2e", "e2e"), chk("perf", "perf", "api", exclusive=True),
        chk("api-errors", "sentry", "api"), chk("api-e2e", "e2e", "api"),
    ]))}
    assert nodes["api-health"].needs == ("api",) and nodes["api-health"].after == ()
    # functional: per service after that service's smoke check; the whole-system E2E after every service and smoke
    assert nodes["web-dast"].needs == ("web",) and nodes["web-dast"].after == ("web-health",)
    assert nodes["api-e2e"].after == ("api-health",)
    assert nodes["e2e"].needs == ("api", "web", "worker") and nodes["e2e"].after == ("api-health", "web-health")
    # load: the exclusive perf check of api needs every service and follows every earlier and parallel check
    assert nodes["perf"].needs == ("api", "web", "worker") and nodes["perf"].exclusive
    assert set(nodes["perf"].after) == {"api-health", "web-health", "web-dast", "e2e", "api-e2e"}
    # monitoring of api comes after the load test (whose needs overlap), so it runs alone as before
    assert "perf" in nodes["api-errors"].after and "e2e" in nodes["api-errors"].after
    assert [n.stage_name for n in check_graph(spec([chk("a", "health", "api"), chk("b", "sentry", "web")]))] == [
        "smoke", "monitoring"]


def test_declared_stages_and_exclusive_checks_run_one_at_a_time() -> None:
    nodes = {n.name: n for n in check_graph(spec(
        [chk("a", "sleep", "api"), chk("b", "sleep", "web"), chk("load1", "sleep", "api", exclusive=True),
         chk("load2", "sleep", "web", exclusive=True), chk("c", "sleep", "worker")],
        stages=[{"name": "one", "checks": ["a", "b", "load1", "load2"]}, {"name": "two", "checks": ["c"]}],
    ))}
    assert nodes["a"].after == () and nodes["b"].after == ()
    assert nodes["load1"].after == ("a", "b") and nodes["load2"].after == ("a", "b", "load1")
    assert nodes["c"].needs == ("worker",) and set(nodes["c"].after) == {"load1", "load2"}  # not a or b


def test_starts_when_in_words() -> None:
    nodes = {n.name: n for n in check_graph(spec([chk("api-health", "health", "api"), chk("e2e", "e2e"),
                                                  chk("perf", "perf", "api", exclusive=True)]))}
    assert starts_when(nodes["api-health"], 3) == "after api deployed + warmed"
    assert starts_when(nodes["e2e"], 3) == "after all services deployed + warmed, and after api-health passed"
    assert starts_when(nodes["perf"], 3) == ("alone, after all services deployed + warmed, and after api-health, "
                                             "e2e passed")

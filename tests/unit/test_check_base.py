"""The one base of gates and checks (providers/checks/base.py): ERROR when it could not measure, spec locations."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from deployments.settings import AevonSettings
from deployments.spec import CheckSpec, EnvironmentSpec, ServiceSpec, SourceSpec
from flows.runtime import build_runtime
from providers.checks.base import GATES, VALIDATION, BaseCheck, CheckContext, CheckInput, Section
from providers.checks.sentry import make_check as make_sentry
from providers.errors import ConfigError, PermanentError, TransientError
from providers.models import CheckResult, Finding, Outcome, Release, Severity

SECRET = "tok_do_not_show_31337"


def context(section: Section = GATES, index: int = 0, *, settings: dict[str, Any] | None = None,
            timeout_s: float = 30, kind: str = "probe", spec_file: Path | None = None,
            secrets: dict[str, SecretStr] | None = None) -> CheckContext:
    env = EnvironmentSpec(environment="prod", source=SourceSpec(repo="/nowhere"),
                          services=[ServiceSpec(name="api", provider="memory")])
    spec = CheckSpec(name="probe", kind=kind, settings=settings or {}, timeout_s=timeout_s)
    return CheckContext(env=env, spec=spec, secrets=secrets or {}, artifacts_dir=Path("/nonexistent"),
                        baseline_dir=Path("/nonexistent"), section=section, index=index, spec_file=spec_file)


def release_input() -> CheckInput:
    return CheckInput(release=Release(release_id="prod-1", env="prod", ref="v1.0.0", sha="a" * 40), services={})


class Probe(BaseCheck):
    """Measures by awaiting `behaviour`: returns its result, or raises what it raises."""

    kind = "probe"

    def __init__(self, ctx: CheckContext, behaviour: Any) -> None:
        super().__init__(ctx)
        self.behaviour = behaviour

    async def measure(self, inp: CheckInput) -> CheckResult:
        result: CheckResult = await self.behaviour(self)
        return result


async def run(behaviour: Any, timeout_s: float = 30) -> CheckResult:
    return await Probe(context(timeout_s=timeout_s), behaviour).run(release_input())


async def test_a_measurement_is_returned_with_name_kind_and_duration() -> None:
    async def ok(check: Probe) -> CheckResult:
        return check.passed("all good", metrics={"x": 1.0})

    result = await run(ok)
    assert (result.name, result.kind, result.outcome, result.summary) == ("probe", "probe", Outcome.PASSED, "all good")
    assert result.metrics == {"x": 1.0} and result.duration_s >= 0


@pytest.mark.parametrize("error", [
    TransientError("HTTP 503 after 3 tries", provider="github", resource="aevon/app@abc"),
    PermanentError("HTTP 401: Bad credentials", provider="github", resource="aevon/app@abc"),
])
async def test_provider_error_is_error_naming_provider_and_resource(error: Exception) -> None:
    async def fails(check: Probe) -> CheckResult:
        raise error

    result = await run(fails)
    assert result.outcome is Outcome.ERROR
    assert result.summary == f"could not measure: {error}" and "github aevon/app@abc" in result.summary
    [finding] = result.findings
    assert finding.severity is Severity.HIGH and finding.location == "aevon/app@abc"


@pytest.mark.parametrize("error", [KeyError("conclusion"), TypeError("'NoneType' object is not subscriptable"),
                                   ValueError("invalid literal for int()")])
async def test_unexpected_answer_is_error_not_a_crash(error: Exception) -> None:
    async def malformed(check: Probe) -> CheckResult:
        raise error

    result = await run(malformed)
    assert result.outcome is Outcome.ERROR
    assert result.summary.startswith(f"could not measure: unexpected answer ({type(error).__name__}: ")


async def test_no_answer_within_the_spec_timeout_is_error() -> None:
    async def hangs(check: Probe) -> CheckResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    result = await run(hangs, timeout_s=0.05)
    assert result.outcome is Outcome.ERROR and result.summary == "did not finish within 0.05s"


async def test_a_timeout_inside_the_measurement_is_not_reported_as_ours() -> None:
    async def inner_timeout(check: Probe) -> CheckResult:
        raise TimeoutError

    result = await run(inner_timeout)
    assert result.outcome is Outcome.ERROR and result.summary == "could not measure: TimeoutError"


async def test_config_error_at_run_time_is_error() -> None:
    async def no_url(check: Probe) -> CheckResult:
        raise ConfigError("check probe: service 'api' has no URL; set settings.url")

    result = await run(no_url)
    assert result.outcome is Outcome.ERROR and "has no URL" in result.summary


async def test_any_other_exception_is_error_naming_only_its_type() -> None:
    async def bug(check: Probe) -> CheckResult:
        raise RuntimeError(f"token={SECRET}")

    result = await run(bug)
    assert result.outcome is Outcome.ERROR and result.summary == "could not measure: RuntimeError while measuring"
    assert SECRET not in result.model_dump_json()


async def test_cancellation_is_not_turned_into_a_result() -> None:
    """Fail fast cancels a running check: the cancellation must reach the caller, not become ERROR."""
    started = asyncio.Event()

    async def long(check: Probe) -> CheckResult:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    task = asyncio.create_task(run(long))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_constructors() -> None:
    check = Probe(context(), None)
    findings = [Finding(message=f"m{i}", severity=Severity.HIGH) for i in range(8)]
    failed = check.failed(findings, {"n": 8.0}, prefix="not approved: ")
    assert failed.outcome is Outcome.FAILED and failed.summary == "not approved: m0; m1; m2; m3; m4; m5; and 2 more"
    assert check.failed(findings[:1], summary="own words").summary == "own words"
    error = check.error("x" * 900, resource="r", metrics={"polls": 2.0})
    assert error.outcome is Outcome.ERROR and len(error.summary) == 500 and error.metrics == {"polls": 2.0}
    assert [(f.severity, f.location) for f in error.findings] == [(Severity.HIGH, "r")]
    assert check.error("kept", findings=[]).findings == []
    assert check.result(Outcome.PASSED, "s", artifacts={"a": "/p"}).artifacts == {"a": "/p"}


class TokenSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token_scope: str = Field(pattern=r"^repo$")
    items: list[int] = Field(default_factory=list)


def test_settings_errors_name_the_spec_location_as_the_spec_spells_it() -> None:
    spec_file = Path("deployments/prod.yaml")
    ctx = context(GATES, 2, settings={"token_scope": "admin"}, spec_file=spec_file)
    with pytest.raises(ConfigError) as err:
        ctx.settings(TokenSettings)
    assert err.value.location == "deployments/prod.yaml: gates[2].settings.token_scope"
    assert str(err.value).startswith("deployments/prod.yaml: gates[2].settings.token_scope: String should match")

    with pytest.raises(ConfigError) as err:
        context(VALIDATION, 4, settings={"token_scope": "repo", "items": [1, "x"]}).settings(TokenSettings)
    assert err.value.location == "validation.checks[4].settings.items[1]"


def test_a_real_check_names_its_validation_location() -> None:
    ctx = context(VALIDATION, 4, kind="sentry", timeout_s=300, spec_file=Path("deployments/staging.yaml"),
                  settings={"org": "aevon", "projects": ["api"], "window_s": -1},
                  secrets={"auth_token": SecretStr(SECRET)})
    with pytest.raises(ConfigError) as err:
        make_sentry(ctx)
    assert err.value.location == "deployments/staging.yaml: validation.checks[4].settings.window_s"
    no_token = context(VALIDATION, 1, kind="sentry", timeout_s=300, settings={"org": "aevon", "projects": ["api"]})
    with pytest.raises(ConfigError) as err:
        make_sentry(no_token)
    assert err.value.location == "validation.checks[1].secrets" and "auth_token" in str(err.value)


async def test_runtime_gives_each_check_its_section_index_and_file(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEVON_STATE_DIR", str(tmp_path / "state"))
    sleep = {"kind": "sleep", "settings": {"seconds": 0}}
    spec: dict[str, Any] = {
        "environment": "prod", "source": {"repo": "/nowhere"}, "services": [{"name": "api", "provider": "memory"}],
        "gates": [{"name": "a", **sleep}, {"name": "b", **sleep}],
        "validation": {"checks": [{"name": "c", **sleep}]},
    }
    (tmp_path / "prod.yaml").write_text(yaml.safe_dump(spec))
    rt = build_runtime("prod", tmp_path, settings=AevonSettings())
    await rt.aclose()
    locations = [c.ctx.location() for _, c in [*rt.gates, *rt.checks] if isinstance(c, BaseCheck)]
    assert locations == [f"{tmp_path / 'prod.yaml'}: gates[0]", f"{tmp_path / 'prod.yaml'}: gates[1]",
                         f"{tmp_path / 'prod.yaml'}: validation.checks[0]"]

    spec["gates"][1]["settings"] = {"seconds": -1}
    (tmp_path / "prod.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError) as err:
        build_runtime("prod", tmp_path, settings=AevonSettings())
    assert err.value.location == f"{tmp_path / 'prod.yaml'}: gates[1].settings.seconds"

    spec["gates"] = []
    spec["validation"]["checks"][0]["kind"] = "nosuch"
    (tmp_path / "prod.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match="unknown check kind 'nosuch'") as err:
        build_runtime("prod", tmp_path, settings=AevonSettings())
    assert err.value.location == f"{tmp_path / 'prod.yaml'}: validation.checks[0].kind"

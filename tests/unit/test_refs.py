"""Refs and SHAs (providers/source/refs.py): well-formed refs, full SHAs, the environment's ref rule, used by plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deployments.settings import AevonSettings
from deployments.spec import EnvironmentSpec, ServiceSpec, SourceSpec
from flows.plan import render_plan
from flows.readonly import read_only_runtime
from providers.errors import ConfigError
from providers.source.refs import check_ref, is_full_sha, looks_like_sha, require_sha, validate_ref

SHA = "0123456789abcdef0123456789abcdef01234567"


def env_spec(pattern: str | None, env: str = "prod") -> EnvironmentSpec:
    return EnvironmentSpec(environment=env, source=SourceSpec(repo="/nowhere", ref_pattern=pattern),
                           services=[ServiceSpec(name="api", provider="memory")])


@pytest.mark.parametrize("ref", ["-rf", "a..b", "x y", "v1.lock", "ref@{1}", "a/", "a//b", "a" * 201, "v1\n"])
def test_malformed_refs_are_refused_at_the_ref_option(ref: str) -> None:
    with pytest.raises(ConfigError, match="malformed git ref") as err:
        validate_ref(ref)
    assert err.value.location == "--ref"


def test_an_empty_ref_is_refused_and_says_one_is_required() -> None:
    with pytest.raises(ConfigError, match="malformed git ref '': a ref is required") as err:
        check_ref(env_spec(None), "")
    assert err.value.location == "--ref"


@pytest.mark.parametrize("ref", ["main", "v1.4.0", "release/2026-11", "refs/tags/v2", SHA])
def test_wellformed_refs_pass_unchanged(ref: str) -> None:
    assert validate_ref(ref) == ref and check_ref(env_spec(None), ref) == ref


def test_full_sha_is_exactly_forty_lower_case_hex() -> None:
    assert is_full_sha(SHA) and require_sha(SHA) == SHA
    for bad in (SHA[:39], SHA + "0", SHA.upper(), "g" * 40, f" {SHA}", f"{SHA}\n", ""):
        assert not is_full_sha(bad)
        with pytest.raises(ConfigError, match="is not a full 40-hex commit SHA") as err:
            require_sha(bad, "release dev-1")
        assert err.value.location == "release.sha" and "release dev-1" in str(err.value)


def test_an_abbreviated_sha_looks_like_one() -> None:
    assert looks_like_sha("0123456") and looks_like_sha(SHA)
    assert not looks_like_sha("012345") and not looks_like_sha("v1.4.0") and not looks_like_sha(SHA + "0")
    assert not looks_like_sha("0123456\n")


def test_ref_pattern_must_match_the_whole_ref_and_the_error_names_environment_and_pattern() -> None:
    spec = env_spec(r"v\d+\.\d+\.\d+")
    assert check_ref(spec, "v1.4.0") == "v1.4.0"
    for ref in ("main", "v1.4.0-rc1", "xv1.4.0"):
        with pytest.raises(ConfigError) as err:
            check_ref(spec, ref)
        text = str(err.value)
        assert f"ref {ref!r} does not match" in text and r"'v\\d+\\.\\d+\\.\\d+'" in text
        assert "environment prod" in text and err.value.location == "--ref"


def test_malformed_ref_is_refused_before_the_pattern_is_asked() -> None:
    with pytest.raises(ConfigError, match=r"malformed git ref 'v1\.\.v2'"):
        check_ref(env_spec(r".*"), "v1..v2")


def test_a_broken_ref_pattern_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="not a valid regular expression") as err:
        check_ref(env_spec("v(("), "v1")
    assert err.value.location == "source.ref_pattern"


async def test_plan_applies_the_environment_ref_pattern_like_deploy(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`aevon-deploy plan prod --ref main` is refused as `deploy` refuses it, before the repository is read."""
    spec = {"environment": "prod", "source": {"repo": str(tmp_path / "no-repo"), "ref_pattern": r"v\d+"},
            "services": [{"name": "api", "provider": "memory"}]}
    (tmp_path / "prod.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("AEVON_STATE_DIR", str(tmp_path / "state"))
    ro = read_only_runtime("prod", tmp_path, AevonSettings())
    try:
        with pytest.raises(ConfigError, match=r"'main' does not match the pattern 'v\\\\d\+' that environment prod"):
            await render_plan(ro, "main")
        with pytest.raises(ConfigError, match="malformed git ref"):
            await render_plan(ro, "v1..v2")
    finally:
        await ro.rt.aclose()

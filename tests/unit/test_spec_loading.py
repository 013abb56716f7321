"""Spec loading: the shipped specs load; every broken input names the file and the field, before any side effect."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deployments.loader import load_spec
from deployments.settings import AevonSettings, needed_secrets
from flows.runtime import build_runtime, service_layers
from providers.errors import ConfigError, SecretMissing
from providers.source.refs import validate_ref

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deployments"


def write(tmp: Path, env: str, data: object) -> Path:
    (tmp / f"{env}.yaml").write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return tmp


def minimal(**over: object) -> dict[str, object]:
    spec: dict[str, object] = {"environment": "dev", "source": {"repo": "/nowhere"},
                               "services": [{"name": "api", "provider": "memory"}]}
    spec.update(over)
    return spec


@pytest.mark.parametrize("env", sorted(p.stem for p in SHIPPED.glob("*.yaml")))
def test_shipped_specs_load_and_build(env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = load_spec(env, SHIPPED)
    assert spec.environment == env and spec.services
    for name in needed_secrets(spec):
        url = name.upper().endswith(("URL", "DSN"))  # secrets are checked: a URL secret must be one
        monkeypatch.setenv(name, f"postgresql://test@127.0.0.1:5432/{name.lower()}" if url else f"test-{name.lower()}")
    monkeypatch.setenv("AEVON_STATE_DIR", str(tmp_path))
    rt = build_runtime(env, SHIPPED, settings=AevonSettings())
    assert set(rt.targets) == {s.name for s in spec.services}
    assert len(rt.checks) == len(spec.validation.checks)


def test_relative_repo_resolves_against_the_spec_folder(tmp_path: Path) -> None:
    write(tmp_path, "dev", minimal(source={"repo": "../app"}))
    assert load_spec("dev", tmp_path).source.repo == str((tmp_path / ".." / "app").resolve())


def test_unknown_environment_lists_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path, "dev", minimal())
    with pytest.raises(ConfigError, match=r"unknown environment 'qa' .*known: dev"):
        load_spec("qa", tmp_path)


def test_broken_yaml_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "dev", "environment: dev\nservices: [\n  - name: api\n")
    with pytest.raises(ConfigError) as e:
        load_spec("dev", tmp_path)
    assert str(tmp_path / "dev.yaml") in str(e.value) and "line" in str(e.value)


def test_unknown_field_names_the_field_path(tmp_path: Path) -> None:
    write(tmp_path, "dev", minimal(services=[{"name": "api", "provider": "memory", "setings": {}}]))
    with pytest.raises(ConfigError, match=r"dev\.yaml: services\[0\]\.setings: Extra inputs are not permitted"):
        load_spec("dev", tmp_path)


def test_bad_values_name_their_fields(tmp_path: Path) -> None:
    write(tmp_path, "dev", minimal(services=[{"name": "API!", "provider": "memory", "ready_timeout_s": -1}]))
    with pytest.raises(ConfigError) as e:
        load_spec("dev", tmp_path)
    assert "services[0].name" in str(e.value) and "services[0].ready_timeout_s" in str(e.value)


def test_reference_to_unknown_service(tmp_path: Path) -> None:
    write(tmp_path, "dev", minimal(validation={"checks": [{"name": "h", "kind": "health", "service": "nope"}]}))
    with pytest.raises(ConfigError, match=r"validation.checks\[0\]\.service: unknown service 'nope'"):
        load_spec("dev", tmp_path)


def test_environment_name_must_match_the_file(tmp_path: Path) -> None:
    write(tmp_path, "dev", minimal(environment="prod"))
    with pytest.raises(ConfigError, match="says environment 'prod' but the file is for 'dev'"):
        load_spec("dev", tmp_path)


def test_unknown_provider_names_file_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEVON_STATE_DIR", str(tmp_path / "state"))
    write(tmp_path, "dev", minimal(services=[{"name": "api", "provider": "herokuish"}]))
    with pytest.raises(ConfigError, match=r"dev\.yaml: services\.api\.provider: unknown service provider 'herokuish'"):
        build_runtime("dev", tmp_path, settings=AevonSettings())


def test_bad_provider_setting_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEVON_STATE_DIR", str(tmp_path / "state"))
    write(tmp_path, "dev", minimal(services=[{"name": "api", "provider": "local", "settings": {"command": ["x"],
                                                                                              "port": 99999}}]))
    with pytest.raises(ConfigError, match=r"services\.api\.settings\.port"):
        build_runtime("dev", tmp_path, settings=AevonSettings())


def test_missing_secret_fails_before_any_side_effect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("AEVON_STATE_DIR", str(state))
    monkeypatch.delenv("APP_DB_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "dev", minimal(database={"url_secret": "APP_DB_URL"}))
    with pytest.raises(SecretMissing) as e:
        build_runtime("dev", tmp_path, settings=AevonSettings())
    assert "dev.yaml: database.url_secret: secret APP_DB_URL is not set" in str(e.value)
    assert not state.exists()


def test_secret_from_env_file_is_a_secretstr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEVON_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("APP_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env.dev").write_text("UNRELATED=1\nAPP_TOKEN=hunter2-very-secret\n")
    write(tmp_path, "dev", minimal(services=[{"name": "api", "provider": "memory", "secrets": {"token": "APP_TOKEN"}}]))
    rt = build_runtime("dev", tmp_path, settings=AevonSettings())
    assert rt.secrets["APP_TOKEN"].get_secret_value() == "hunter2-very-secret"
    assert "hunter2" not in repr(rt.secrets) and "hunter2" not in str(rt)


def test_dependency_cycle_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "dev", minimal(services=[
        {"name": "a", "provider": "memory", "depends_on": ["b"]},
        {"name": "b", "provider": "memory", "depends_on": ["a"]},
    ]))
    with pytest.raises(ConfigError, match="cycle among a, b"):
        service_layers(load_spec("dev", tmp_path))


@pytest.mark.parametrize("ref", ["-rf", "a..b", "x y", "v1.lock", "ref@{1}", "", "a/", "a" * 201])
def test_malformed_refs_are_refused(ref: str) -> None:
    with pytest.raises(ConfigError, match="malformed git ref"):
        validate_ref(ref)


@pytest.mark.parametrize("ref", ["main", "v1.4.0", "release/2026-11", "0123456789abcdef0123456789abcdef01234567"])
def test_wellformed_refs_pass(ref: str) -> None:
    assert validate_ref(ref) == ref


RUNBOOK_STAGES = [("smoke", {"health"}), ("functional", {"e2e", "dast"}), ("load", {"perf"}),
                  ("monitoring", {"sentry", "prometheus"})]


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_staging_and_prod_run_the_runbooks_whole_validation_in_stages(env: str) -> None:
    """Health, then Playwright E2E and DAST, then the perf smoke alone, then Sentry and Prometheus; bake kept."""
    spec = load_spec(env, SHIPPED)
    kinds = {c.name: c.kind for c in spec.validation.checks}
    stages = [(st.name, {kinds[n] for n in st.checks}) for st in spec.validation.stage_plan()]
    assert stages == RUNBOOK_STAGES
    by_kind = {c.kind: c for c in spec.validation.checks}
    assert by_kind["e2e"].secrets == {"user": "E2E_USER", "password": "E2E_PASSWORD"}  # a test account, by name
    assert {f["name"] for f in by_kind["e2e"].settings["flows"]} == {"login", "task creation", "workflow trigger"}
    assert by_kind["dast"].settings["fail_level"] == "HIGH" and by_kind["dast"].settings["wapiti"]["scope"] == "folder"
    assert by_kind["perf"].exclusive and by_kind["perf"].settings["regression"]["metric"] == "p95_ms"
    assert by_kind["perf"].settings["users"] <= 5 and by_kind["perf"].settings["duration_s"] <= 30
    hosts = {c.settings["url"] for c in spec.validation.checks if c.kind in ("health", "e2e", "dast", "perf")}
    assert all(("staging" in h) == (env == "staging") for h in hosts)  # each against its own environment's URLs
    assert spec.validation.bake_s > 0 and spec.promotion.skip_unchanged


def test_production_dast_sends_no_attack() -> None:
    wapiti = next(c for c in load_spec("prod", SHIPPED).validation.checks if c.kind == "dast").settings["wapiti"]
    assert set(wapiti["modules"]) <= {"csp", "http_headers", "cookieflags"}  # wapiti's passive modules only


def test_load_on_a_remote_host_needs_allow_remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEVON_STATE_DIR", str(tmp_path / "state"))
    perf = {"name": "p", "kind": "perf", "settings": {"url": "https://api.aevon.dev", "endpoints": [{"path": "/"}]}}
    write(tmp_path, "dev", minimal(validation={"checks": [perf]}))
    with pytest.raises(ConfigError, match=r"validation\.checks.*url.*loopback.*allow_remote"):
        build_runtime("dev", tmp_path, settings=AevonSettings())
    perf["settings"]["allow_remote"] = True  # type: ignore[index]
    write(tmp_path, "dev", minimal(validation={"checks": [perf]}))
    assert [c.kind for _, c in build_runtime("dev", tmp_path, settings=AevonSettings()).checks] == ["perf"]

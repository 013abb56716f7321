"""Bad input is refused cleanly: broken specs and malformed secrets end with exit 3, a clear message, no side effect,
and the secret's value nowhere in what was produced (the CLI run as a user runs it, as a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments.loader import load_spec
from deployments.secret_values import check_value
from deployments.settings import resolve_secrets
from providers.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "flows.cli"]


def spec(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "environment": "dev",
        "source": {"repo": "/nonexistent/repo"},
        "services": [{"name": "api", "provider": "memory", "settings": {}, "secrets": {"token": "API_TOKEN"}}],
    }
    return {**base, **extra}


def run_plan(tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`aevon-deploy --spec-dir <tmp>/specs plan dev --ref v1`, its state dir under `tmp`, from `tmp`."""
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN") and k != "DATABASE_URL"}
    full = {**clean, "AEVON_STATE_DIR": str(tmp / "state"), "PYTHONPATH": str(ROOT),
            "AEVON_PLUGINS": "tests.standins", **env}
    return subprocess.run([*CLI, "--spec-dir", str(tmp / "specs"), "plan", "dev", "--ref", "v1"],
                          capture_output=True, text=True, cwd=tmp, env=full, timeout=120, check=False)


def write(tmp: Path, data: bytes) -> Path:
    (tmp / "specs").mkdir(exist_ok=True)
    path = tmp / "specs" / "dev.yaml"
    path.write_bytes(data)
    return path


GOOD = yaml.safe_dump(spec(), sort_keys=False)
BROKEN_SPECS = {
    "utf16": (GOOD.encode("utf-16"), "not UTF-8 text"),
    "binary": (bytes(range(256)) * 4, "not UTF-8 text"),
    "nul": (GOOD.encode() + b"\x00\n", "NUL bytes"),
    "duplicate-key": (GOOD.replace("environment: dev\n", "environment: dev\nenvironment: dev\n").encode(),
                      "duplicate key 'environment' (first at line 1)"),
    "nested-duplicate": (GOOD.replace("  provider: memory\n", "  provider: memory\n  provider: vercel\n").encode(),
                         "duplicate key 'provider'"),
    "bad-yaml": (b"environment: dev\nsource: {repo: [\n", "not valid YAML (line"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_SPECS))
def test_broken_spec_is_refused_naming_the_file_with_no_side_effect(kind: str, tmp_path: Path) -> None:
    data, expected = BROKEN_SPECS[kind]
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        load_spec("dev", tmp_path / "specs")
    assert str(path) in str(caught.value) and expected in str(caught.value)
    out = run_plan(tmp_path, {"API_TOKEN": "tok_fine"})
    assert out.returncode == 3, out.stderr
    assert f"aevon-deploy: {path}: " in out.stderr and expected in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "state").exists()


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    text = GOOD + "x-defaults: &d {error_retries: 1}\n"
    write(tmp_path, text.encode())
    with pytest.raises(ConfigError, match="x-defaults"):  # unknown top-level key: the merge itself parsed fine
        load_spec("dev", tmp_path / "specs")


MALFORMED = {
    "trailing-newline": ("API_TOKEN", "tok_CANARY1f0e\n", "ends with a newline"),
    "trailing-cr": ("API_TOKEN", "tok_CANARY2a7b\r", "ends with a carriage return"),
    "inner-control": ("API_TOKEN", "tok_CANARY\x1b3c4d", "control character (U+001B)"),
    "non-ascii": ("API_TOKEN", "tok_CANARYé5e6f", "non-ASCII character"),
    "slash-in-db-password": ("DATABASE_URL", "postgresql://app:CANARY/pw9@127.0.0.1:5432/app",
                             "'@' follows the host"),
    "slash-no-port": ("DATABASE_URL", "postgresql://app:CANARY/pw9@127.0.0.1/app", "'@' follows the host"),
    "colon-port": ("DATABASE_URL", "postgresql://app:CANARY7@127.0.0.1:54x/app", "port is not a number"),
    "at-in-db-password": ("DATABASE_URL", "postgresql://app:CANARY@pw8@127.0.0.1:5432/app", "holds an '@'"),
    "at-after-host": ("DATABASE_URL", "postgresql://app:CANARY/x@127.0.0.1/app", "is not a well-formed URL"),
    "not-a-url": ("DATABASE_URL", "CANARY-not-a-url", "is not a URL"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_secret_is_refused_by_name_and_never_printed(kind: str, tmp_path: Path) -> None:
    name, value, expected = MALFORMED[kind]
    db = {"provider": "prisma", "url_secret": "DATABASE_URL"}
    path = write(tmp_path, yaml.safe_dump(spec(database=db), sort_keys=False).encode())
    env = {"API_TOKEN": "tok_fine", "DATABASE_URL": "postgresql://app:pw@127.0.0.1:5432/app", name: value}
    canary = value.strip()
    out = run_plan(tmp_path, env)
    assert out.returncode == 3, out.stderr
    assert f"secret {name} " in out.stderr and expected in out.stderr and str(path) in out.stderr
    produced = out.stdout + out.stderr
    assert "CANARY" not in produced and canary not in produced and "Traceback" not in produced
    assert not (tmp_path / "state").exists()
    # the same from the library: the exception's text, repr and chain quote nothing of the value
    os.environ.update(env)
    try:
        with pytest.raises(ConfigError) as caught:
            resolve_secrets(load_spec("dev", tmp_path / "specs"), path, tmp_path)
    finally:
        for k in env:
            os.environ.pop(k, None)
    exc: BaseException | None = caught.value
    while exc is not None:
        assert "CANARY" not in str(exc) and "CANARY" not in repr(exc)
        exc = exc.__cause__ or exc.__context__


@pytest.mark.parametrize("name", ["_API_TOKEN", "json", "model_config", "copy", "dict"])
def test_secret_names_with_underscore_or_model_attribute_names_work(name: str, tmp_path: Path) -> None:
    data = spec()
    data["services"][0]["secrets"] = {"token": name}
    path = write(tmp_path, yaml.safe_dump(data).encode())
    os.environ[name] = "tok_value"
    try:
        secrets = resolve_secrets(load_spec("dev", tmp_path / "specs"), path, tmp_path)
    finally:
        os.environ.pop(name)
    assert secrets[name].get_secret_value() == "tok_value"
    (tmp_path / ".env.dev").write_text(f"{name}=from_file\n")
    assert resolve_secrets(load_spec("dev", tmp_path / "specs"), path, tmp_path)[name].get_secret_value() == (
        "from_file")


@pytest.mark.parametrize("name", ["MY-TOKEN", "1TOKEN", "A B", ""])
def test_secret_names_that_cannot_be_variables_are_refused_clearly(name: str, tmp_path: Path) -> None:
    data = spec()
    data["services"][0]["secrets"] = {"token": name}
    path = write(tmp_path, yaml.safe_dump(data).encode())
    with pytest.raises(ConfigError, match=r"services\[0\]\.secrets\.token: secret name .* must be letters"):
        resolve_secrets(load_spec("dev", tmp_path / "specs"), path, tmp_path)


def test_env_file_that_is_not_utf8_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.encode())
    (tmp_path / ".env.dev").write_bytes("API_TOKEN=tok_CANARY\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"\.env\.dev: cannot be read as UTF-8") as caught:
        resolve_secrets(load_spec("dev", tmp_path / "specs"), path, tmp_path)
    assert "CANARY" not in str(caught.value) and caught.value.__cause__ is None


def test_well_formed_values_pass() -> None:
    check_value("T", "tok_abc-123.XYZ", ["services[0].secrets.token"])
    check_value("DATABASE_URL", "postgresql://app:p%2Fw@127.0.0.1:5432/app?sslmode=disable", ["database.url_secret"])
    check_value("SENTRY_DSN", "https://key@o1.ingest.sentry.io/42", ["services[0].secrets.SENTRY_DSN"])


def test_malformed_ledger_url_is_refused_by_name(tmp_path: Path) -> None:
    write(tmp_path, GOOD.encode())
    out = run_plan(tmp_path, {"API_TOKEN": "tok_fine",
                              "AEVON_STATE_DB_URL": "postgresql://aevon:CANARY/x@127.0.0.1:5432/aevon"})
    assert out.returncode == 3
    assert "AEVON_STATE_DB_URL: secret AEVON_STATE_DB_URL is not a well-formed URL" in out.stderr
    assert "CANARY" not in out.stdout + out.stderr

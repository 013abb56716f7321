"""Build the sample app's git repository (tags v1, v2, v3-broken ...) from base/ and versions/<name>/ overlays."""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = HERE / "base"
VERSIONS_DIR = HERE / "versions"
APPEND_SUFFIX = ".append"  # versions/<name>/<path>.append: appended to <path> of the parent version
FINGERPRINT_KEY = "aevon.sample-fingerprint"
AUTHOR = ("ΛΞVON Release Bot", "release-bot@aevon.dev")
EPOCH = 1735732800  # 2025-01-01T12:00:00Z; version i is committed i days later


@dataclass(frozen=True)
class Version:
    """One tagged commit: its overlay folder under versions/ (None: base/) on top of its parent tag."""

    tag: str
    parent: str | None
    summary: str
    good: bool = True  # `main` points at the last good version


# Adding a version: a folder under versions/ and one line here (broken ones branch from the last good version).
VERSIONS: tuple[Version, ...] = (
    Version("v1", None, "Initial app: log-in, tasks, workflow runs (init migration, demo user)"),
    Version("v2", "v1", "Task priority: additive column, API field, page selector"),
    Version("v3-broken", "v2", "Audit trail: new AuditEvent table; /health fails (column mismatch)", good=False),
    Version("bad-e2e", "v2", "Double-submit guard swallows the task form: Add task creates nothing", good=False),
    Version("bad-xss", "v2", "Task search echoes the query unescaped (reflected XSS)", good=False),
    Version("bad-slow", "v2", "/status recounts migrations uncached: +300 ms a request, /health unchanged", good=False),
    Version("bad-errors", "v2", "Scheduler loop fails every tick and reports to Sentry; every answer stays 200",
            good=False),
    Version("v4-destructive", "v2", "Drops the unused Session.createdAt column (destructive migration)", good=False),
    # The safe rename of Task.title to Task.name (docs/migrations.md section 6). Good releases, kept off `main`
    # (good=False) so that `main`, the demo and staging's promotion stay at v2.
    Version("v5-task-name", "v2", "Rename Task.title to name, step 1: add name + backfill; write both, read name",
            good=False),
    Version("v6-drop-title", "v5-task-name", "Rename Task.title to name, step 2: code on name only; contract "
            "migration drops title", good=False),
)


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"git {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def fingerprint() -> str:
    """Hash of the version list and every source file: a DEST built from the same inputs is up to date."""
    h = hashlib.sha256(repr(VERSIONS).encode())
    for path in _files(BASE) + _files(VERSIONS_DIR):
        h.update(str(path.relative_to(HERE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def overlay(src: Path, dest: Path) -> None:
    """Copy `src` onto the work tree `dest`: files replace or add; `<path>.append` files extend <path>."""
    for path in _files(src):
        rel = path.relative_to(src)
        if rel.name.endswith(APPEND_SUFFIX):
            target = dest / rel.with_name(rel.name[: -len(APPEND_SUFFIX)])
            if not target.exists():
                raise SystemExit(f"{path}: nothing to append to ({target.relative_to(dest)} does not exist)")
            with target.open("ab") as out:
                out.write(path.read_bytes())
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / rel)


def _clear_worktree(dest: Path) -> None:
    for child in dest.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def up_to_date(dest: Path, want: str) -> bool:
    if not (dest / ".git").is_dir():
        return False
    got = subprocess.run(
        ["git", "-C", str(dest), "config", "--get", FINGERPRINT_KEY], capture_output=True, text=True, check=False
    ).stdout.strip()
    tags = set(_git(dest, "tag", "--list").split())
    return got == want and tags >= {v.tag for v in VERSIONS}


def build(dest: Path) -> bool:
    """Build the repository at `dest`; return False when it was already up to date (nothing done)."""
    want = fingerprint()
    if up_to_date(dest, want):
        return False
    if dest.exists() and any(dest.iterdir()):
        if not (dest / ".git").is_dir() or not _git(dest, "config", "--get-regexp", "^aevon\\."):
            raise SystemExit(f"{dest} exists and is not a sample repository built by this script: not touching it")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    _git(dest, "init", "--quiet", "--initial-branch=main")
    _git(dest, "config", FINGERPRINT_KEY, "building")
    main_sha = ""
    for i, version in enumerate(VERSIONS):
        when = f"{EPOCH + i * 86400} +0000"
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": AUTHOR[0], "GIT_AUTHOR_EMAIL": AUTHOR[1], "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_NAME": AUTHOR[0], "GIT_COMMITTER_EMAIL": AUTHOR[1], "GIT_COMMITTER_DATE": when,
        }
        if version.parent is None:
            _clear_worktree(dest)
            overlay(BASE, dest)
        else:
            _git(dest, "checkout", "--quiet", "--force", "--detach", f"refs/tags/{version.parent}")
            _git(dest, "clean", "-fdxq")
            overlay(VERSIONS_DIR / version.tag, dest)
        _git(dest, "add", "--all")
        _git(dest, "-c", "commit.gpgsign=false", "commit", "--quiet", "--allow-empty",
             "-m", f"{version.tag}: {version.summary}", env=env)
        _git(dest, "-c", "tag.gpgsign=false", "tag", "--annotate", "-m", version.summary, version.tag, env=env)
        if version.good:
            main_sha = _git(dest, "rev-parse", "HEAD")
    _git(dest, "checkout", "--quiet", "--force", "-B", "main", main_sha)
    _git(dest, "config", FINGERPRINT_KEY, want)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dest", type=Path, help="where to build the repository (rebuilt when out of date)")
    args = parser.parse_args(argv)
    dest = args.dest.resolve()
    built = build(dest)
    tags = _git(dest, "tag", "--list", "--format=%(refname:short) %(*objectname)")
    print(("built" if built else "up to date") + f": {dest}\n{tags}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The target app's git source: validate a ref, resolve it to a SHA, check a SHA out into a cache directory."""

from __future__ import annotations

import asyncio
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from providers.errors import ConfigError, PermanentError, TransientError

# git check-ref-format rules that matter here, plus: no leading '-', no whitespace, no '..', no '@{', bounded.
_REF_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*@\{)(?!.*//)[A-Za-z0-9._/@+-]{1,200}(?<![./])$")
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def validate_ref(ref: str) -> str:
    """Return `ref` when it is a well-formed git ref (branch, tag or SHA), else raise ConfigError."""
    if not _REF_RE.match(ref) or ref.endswith(".lock"):
        raise ConfigError(f"malformed git ref {ref!r}", "--ref")
    return ref


async def _git(repo: str, *args: str, timeout: float = 60) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git", "-C", repo, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise TransientError(f"git {args[0]} timed out", provider="git", resource=repo) from exc
    if proc.returncode != 0:
        raise PermanentError(
            f"git {args[0]} failed: {err.decode(errors='replace').strip()[:500]}", provider="git", resource=repo
        )
    return out.decode()


class GitSource:
    """A git repository reachable from this machine (a local path or a clone URL git can fetch)."""

    def __init__(self, repo: str, cache_dir: Path) -> None:
        self.repo = repo
        self.cache_dir = cache_dir

    async def resolve(self, ref: str) -> str:
        """Resolve `ref` (branch, tag, SHA) to a full commit SHA."""
        validate_ref(ref)
        try:
            out = await _git(self.repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
        except PermanentError as exc:
            raise ConfigError(f"ref {ref!r} does not name a commit in {self.repo}", "--ref") from exc
        sha = out.strip()
        if not _SHA_RE.match(sha):
            raise ConfigError(f"ref {ref!r} does not name a commit in {self.repo}", "--ref")
        return sha

    async def is_tag(self, ref: str) -> bool:
        """True when `ref` is a tag of the repository."""
        try:
            await _git(self.repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"refs/tags/{ref}")
        except PermanentError:
            return False
        return True

    async def checkout(self, sha: str) -> Path:
        """A read-only-by-convention checkout of `sha` (cached: the same SHA is extracted once)."""
        if not _SHA_RE.match(sha):
            raise ConfigError(f"not a full commit SHA: {sha!r}")
        dest = self.cache_dir / sha
        if (dest / ".aevon-complete").exists():
            return dest
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache_dir) as tmp:
            archive = Path(tmp) / "src.tar"
            await _git(self.repo, "archive", "--format=tar", "-o", str(archive), sha)
            staging = Path(tmp) / "tree"
            await asyncio.to_thread(_extract, archive, staging)
            (staging / ".aevon-complete").write_text(sha + "\n")
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
        return dest


def _extract(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")

"""The target app's git source: resolve a ref (rules in providers/source/refs.py) to a SHA, check a SHA out."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path

from providers.errors import ConfigError, PermanentError, TransientError
from providers.process_env import child_env
from providers.source.refs import REF_LOCATION, is_full_sha, require_sha, validate_ref


async def _git(repo: str, *args: str, timeout: float = 60, transient: bool = False) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git", "-C", repo, *args, env=child_env(keep=("SSH_AUTH_SOCK",), prefixes=("GIT_",)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise TransientError(f"git {args[0]} timed out", provider="git", resource=repo) from exc
    if proc.returncode != 0:
        error = TransientError if transient else PermanentError
        detail = err.decode(errors="replace").strip()[:500]
        raise error(f"git {args[0]} failed: {detail}", provider="git", resource=repo)
    return out.decode()


def is_remote(repo: str) -> bool:
    """True for clone URLs (https://, ssh://, git@host:path), False for local paths."""
    return "://" in repo or re.match(r"^[\w.-]+@[\w.-]+:", repo) is not None


class GitSource:
    """A git repository: a local path, or a clone URL kept as a bare mirror in the cache and fetched per run."""

    def __init__(self, repo: str, cache_dir: Path) -> None:
        self.repo = repo
        self.cache_dir = cache_dir
        self._fetched = False
        digest = hashlib.sha256(repo.encode()).hexdigest()[:16]
        self._mirror = cache_dir.parent / "mirrors" / digest if is_remote(repo) else None

    async def _local(self) -> str:
        """The local repository to read: the path itself, or the mirror (cloned once, fetched once a process)."""
        if self._mirror is None:
            return self.repo
        if not (self._mirror / "HEAD").exists():
            self._mirror.parent.mkdir(parents=True, exist_ok=True)
            await _git(str(self._mirror.parent), "clone", "--mirror", "--quiet", "--", self.repo, str(self._mirror),
                       timeout=600, transient=True)
        elif not self._fetched:
            await _git(str(self._mirror), "remote", "update", "--prune", timeout=600, transient=True)
        self._fetched = True
        return str(self._mirror)

    async def resolve(self, ref: str) -> str:
        """Resolve `ref` (branch, tag, SHA) to a full commit SHA."""
        validate_ref(ref)
        try:
            local = await self._local()
            out = await _git(local, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
        except PermanentError as exc:
            raise ConfigError(f"ref {ref!r} does not name a commit in {self.repo}", REF_LOCATION) from exc
        sha = out.strip()
        if not is_full_sha(sha):
            raise ConfigError(f"ref {ref!r} does not name a commit in {self.repo}", REF_LOCATION)
        return sha

    async def is_tag(self, ref: str) -> bool:
        """True when `ref` is a tag of the repository."""
        try:
            await _git(await self._local(), "rev-parse", "--verify", "--quiet", "--end-of-options", f"refs/tags/{ref}")
        except PermanentError:
            return False
        return True

    async def commit_time(self, sha: str) -> datetime:
        """When commit `sha` was made (committer date; lead time for changes counts from it)."""
        out = await _git(await self._local(), "show", "-s", "--format=%cI", require_sha(sha), "--")
        return datetime.fromisoformat(out.strip())

    async def checkout(self, sha: str) -> Path:
        """A read-only-by-convention checkout of `sha` (cached: the same SHA is extracted once)."""
        require_sha(sha, "checkout", location=None)
        dest = self.cache_dir / sha
        if (dest / ".aevon-complete").exists():
            return dest
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache_dir) as tmp:
            archive = Path(tmp) / "src.tar"
            await _git(await self._local(), "archive", "--format=tar", "-o", str(archive), sha)
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

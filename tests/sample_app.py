"""Test helpers for the sample target app: the Prisma toolkit, the tagged repository, running a role."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from providers.source.git import GitSource

ROOT = Path(__file__).resolve().parents[1]
SETUP_PRISMA = ROOT / "scripts" / "setup-prisma.sh"
MAKE_REPO = ROOT / "examples" / "sample-app" / "make_repo.py"


def ensure_prisma_toolkit() -> None:
    """Install the toolkit's node_modules when missing or stale (scripts/setup-prisma.sh; fast when up to date)."""
    subprocess.run(["bash", str(SETUP_PRISMA)], check=True, capture_output=True)


def build_sample_repo(dest: Path) -> Path:
    """The sample app's git repository (tags v1, v2, v3-broken ...) at `dest`, via make_repo.py."""
    subprocess.run([sys.executable, str(MAKE_REPO), str(dest)], check=True, capture_output=True)
    return dest


async def checkout(repo: Path, tag: str, cache: Path) -> tuple[str, Path]:
    """(sha, checkout dir) of `tag`, extracted by providers.source.git.GitSource as the deployer does."""
    source = GitSource(str(repo), cache)
    sha = await source.resolve(tag)
    return sha, await source.checkout(sha)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def stop_process(proc: asyncio.subprocess.Process, grace_s: float = 10) -> None:
    """SIGTERM, then SIGKILL after `grace_s`; reaps the process."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@asynccontextmanager
async def run_app(
    checkout_dir: Path, role: str, env: dict[str, str], *, log: Path, timeout_s: float = 20.0
) -> AsyncIterator[str]:
    """Start `python server.py --role ROLE --port N` in the checkout; yield its base URL once it listens."""
    port = free_port()
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "server.py", "--role", role, "--port", str(port),
            cwd=checkout_dir, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as client:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"{role} exited with {proc.returncode}:\n{log.read_text()}")
                try:
                    await client.get("/status" if role == "api" else "/health")
                    break
                except httpx.TransportError:
                    if asyncio.get_running_loop().time() > deadline:
                        raise RuntimeError(f"{role} did not listen in {timeout_s}s:\n{log.read_text()}") from None
                    await asyncio.sleep(0.1)
        yield url
    finally:
        await stop_process(proc)

"""`make demo`: deploy the sample app to dev as v1, then v2, then the broken v3, which rolls itself back to v2."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".aevon"
REPO = STATE / "sample-repo"
DB_NAME = "aevon_dev"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
NAMES = {0: "deployed", 1: "failed", 3: "refused before any change", 4: "failed validation and was rolled back",
         5: "rollback FAILED"}


async def reset_database() -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()


async def stop_services() -> None:
    from providers.targets.local import stop_all

    for service in ("web", "api"):
        d = STATE / "targets" / "dev" / service
        if d.exists():
            await stop_all(d, service)


def deploy(ref: str, env: dict[str, str]) -> int:
    print(f"\n$ aevon-deploy deploy dev --ref {ref}", flush=True)
    cli = str(ROOT / ".venv" / "bin" / "aevon-deploy")
    return subprocess.run([cli, "deploy", "dev", "--ref", ref], cwd=ROOT, env=env, check=False).returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stop", action="store_true", help="stop the demo's services and exit")
    args = ap.parse_args()
    asyncio.run(stop_services())
    if args.stop:
        print("demo services stopped")
        return 0
    subprocess.run([sys.executable, str(ROOT / "examples" / "sample-app" / "make_repo.py"), str(REPO)], check=True)
    asyncio.run(reset_database())
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}")
    env_file = ROOT / ".env.dev"  # so that deploy-dev runs from the Prefect UI (`make serve`) find the database too
    if not env_file.exists():
        env_file.write_text(f"DATABASE_URL={env['DATABASE_URL']}\n")
        env_file.chmod(0o600)
    env.setdefault("AEVON_STATE_DIR", str(STATE))
    outcomes = [(ref, deploy(ref, env)) for ref in ("v1", "v2", "v3-broken")]
    status = httpx.get("http://127.0.0.1:8101/status", timeout=5).json()
    print("\n=== demo summary ===")
    for ref, code in outcomes:
        print(f"  {ref:10} exit {code}: {NAMES.get(code, 'unexpected')}")
    print(f"  serving now: api {status.get('version')} ({str(status.get('sha'))[:12]}) on http://127.0.0.1:8101,"
          " web on http://127.0.0.1:8102")
    print(f"  Prefect UI: {env.get('PREFECT_API_URL', '').removesuffix('/api')}  |  stop everything: make stop")
    git = ["git", "-C", str(REPO), "rev-parse", "v2^{commit}"]
    v2 = subprocess.run(git, capture_output=True, text=True, check=True)
    ok = [c for _, c in outcomes] == [0, 0, 4] and status.get("sha") == v2.stdout.strip()
    print("  result: " + ("as expected (v1 ok, v2 ok, v3-broken rolled back to v2)" if ok else "NOT as expected"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

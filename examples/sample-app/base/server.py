"""ΛΞVON sample app entry point: `python server.py --role api|web --port PORT` (cwd = the checkout root)."""

from __future__ import annotations

import argparse
import sys

import uvicorn
from starlette.applications import Starlette


def build(role: str) -> Starlette:
    """The ASGI app of `role`: `api` (JSON over PostgreSQL, needs DATABASE_URL) or `web` (page, needs API_URL)."""
    if role == "api":
        from aevon_app.api import create_app
    else:
        from aevon_app.web import create_app
    return create_app()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--role", choices=["api", "web"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    uvicorn.run(build(args.role), host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a child process inherits: an allow-list of our variables plus what that child needs, never our tokens.

Every tool we start (git, the Prisma CLI, pg_dump/pg_restore/psql, npm audit, the app's own services, wapiti, locust,
Chromium) gets `child_env(...)`: the variables any process needs to run (PATH, HOME, locale, temp dir, proxy and CA
settings), the ones named in `keep` when the orchestrator has them, those starting with one of `prefixes`, and
`extra` (the child's own secrets: the Prisma CLI its database URL, a service its declared secrets). The run's
vendor tokens (VERCEL_TOKEN, AEVON_STATE_DB_URL, ...) are never passed unless a caller names them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

BASE_KEEP = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ",
    "TMPDIR", "TEMP", "TMP", "TERM",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE",
})
"""Variables any child may need to run at all; none of them holds a credential of ours."""


def child_env(
    *,
    keep: Iterable[str] = (),
    prefixes: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
    base: Iterable[str] = BASE_KEEP,
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one child process: `base` ∪ `keep` ∪ names starting with `prefixes`, from `source`
    (default: this process's environment), then `extra` on top."""
    src = os.environ if source is None else source
    names = set(base) | set(keep)
    starts = tuple(prefixes)
    env = {k: v for k, v in src.items() if k in names or (starts and k.startswith(starts))}
    env.update(extra or {})
    return env

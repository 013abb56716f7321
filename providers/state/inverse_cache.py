"""The migration plan's down scripts in the ledger database, keyed by history checksum: shared by every worker."""

from __future__ import annotations

from collections.abc import Sequence

from providers.state.connect import Connect


class LedgerInverseCache:
    """Down scripts by cache key (providers/migrators/prisma/inverse_diff.py `step_keys`), in `aevon_inverse_cache`.

    A script is the deterministic output of `prisma migrate diff` for the history its key spans, so the first
    writer wins and a later one finds it there. Workers in a Kubernetes work pool start with an empty state dir:
    through the ledger, a prod plan reuses what staging computed instead of diffing again (about 2 s a migration).
    """

    def __init__(self, connect: Connect) -> None:
        self._conn = connect

    async def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The scripts cached under `keys` (missing keys are absent)."""
        if not keys:
            return {}
        async with self._conn() as c:
            rows = await c.fetch("SELECT key, script FROM aevon_inverse_cache WHERE key = ANY($1::text[])", list(keys))
        return {r["key"]: r["script"] for r in rows}

    async def put(self, key: str, script: str) -> None:
        """Keep `script` under `key` (a script already there stays: both are the same diff)."""
        async with self._conn() as c:
            await c.execute("INSERT INTO aevon_inverse_cache (key, script) VALUES ($1, $2) "
                            "ON CONFLICT (key) DO NOTHING", key, script)

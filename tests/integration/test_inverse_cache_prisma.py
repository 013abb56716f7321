"""The migration plan with real Prisma (issue 17): no diff into an empty database; inverses cached by checksum."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_prisma_migrator import INIT, MIGRATIONS, PRIORITY, make_checkout, migrator
from tests.pg import temp_database
from tests.sample_app import ensure_prisma_toolkit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _toolkit() -> None:
    ensure_prisma_toolkit()


async def test_empty_database_gets_no_inverse_and_a_cached_inverse_is_reused(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "app", MIGRATIONS)
    cache = tmp_path / "state" / "inverse-cache"
    async with temp_database() as url:
        m = migrator(url, tmp_path)
        fresh = await m.plan(checkout, None)
        assert fresh.pending == [INIT, PRIORITY] and fresh.inverse_steps == {} and fresh.inverse_sql is None
        assert any("the database was empty before this deploy" in f.message for f in fresh.findings)
        assert not cache.exists()  # no `migrate diff` ran

        assert (await m.apply(make_checkout(tmp_path / "v1", {INIT: MIGRATIONS[INIT]}))).applied == [INIT]
        planned = await m.plan(checkout, None)
        assert 'DROP COLUMN "priority"' in planned.inverse_steps[PRIORITY]
        [stored] = list(cache.glob("*.sql"))
        assert stored.read_text().strip() == planned.inverse_steps[PRIORITY].strip()

        # the next plan of the same history reads the cache (a marked script proves it is not diffed again)
        stored.write_text('ALTER TABLE "Task" DROP COLUMN "priority"; -- from the cache\n')
        again = await m.plan(checkout, None)
        assert again.inverse_steps[PRIORITY].endswith("-- from the cache\n")

        # an edited migration is another key: diffed again
        (checkout / "prisma" / "migrations" / PRIORITY / "migration.sql").write_text(
            'ALTER TABLE "Task" ADD COLUMN "priority" BIGINT NOT NULL DEFAULT 0;\n')
        edited = await m.plan(checkout, None)
        assert "from the cache" not in edited.inverse_steps[PRIORITY] and len(list(cache.glob("*.sql"))) == 2

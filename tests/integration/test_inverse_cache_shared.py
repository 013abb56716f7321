"""The migration plan's down scripts are shared through the ledger (issue 17): a worker with an empty state dir
reuses what another computed, and a cache it cannot use never fails the plan."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from deployments.spec import DatabaseSpec
from providers.migrators.base import MigratorContext
from providers.migrators.prisma.migrator import PrismaMigrator, make_migrator
from providers.state.store import StateStore
from tests.integration.test_prisma_migrator import INIT, MIGRATIONS, PRIORITY, make_checkout
from tests.pg import fetch, temp_database
from tests.sample_app import ensure_prisma_toolkit

pytestmark = pytest.mark.slow
MIGRATOR_SPEC = DatabaseSpec()
MARK = 'ALTER TABLE "Task" DROP COLUMN "priority"; -- from the ledger\n'


@pytest.fixture(scope="module", autouse=True)
def _toolkit() -> None:
    ensure_prisma_toolkit()


def worker(url: str, state_dir: Path, store: StateStore) -> PrismaMigrator:
    """A migrator as a worker pod builds it: its own (empty) state dir, the ledger's shared cache."""
    ctx = MigratorContext(env="test", spec=MIGRATOR_SPEC, database_url=SecretStr(url), state_dir=state_dir,
                          shared=store.inverse_cache)
    return make_migrator(ctx)


async def test_a_worker_with_an_empty_state_dir_reuses_the_down_script_another_computed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    checkout = make_checkout(tmp_path / "app", MIGRATIONS)
    async with temp_database() as url, temp_database() as ledger_url:
        async with StateStore(SecretStr(ledger_url)) as store:
            first = worker(url, tmp_path / "pod-1", store)
            assert (await first.apply(make_checkout(tmp_path / "v1", {INIT: MIGRATIONS[INIT]}))).applied == [INIT]
            planned = await first.plan(checkout, None)
            assert 'DROP COLUMN "priority"' in planned.inverse_steps[PRIORITY]
            [row] = await fetch(ledger_url, "SELECT key, script FROM aevon_inverse_cache")
            assert row["script"].strip() == planned.inverse_steps[PRIORITY].strip()

            # a marked script in the ledger proves the next pod reads it instead of running `migrate diff`
            await fetch(ledger_url, "UPDATE aevon_inverse_cache SET script = $1", MARK)
            caplog.set_level(logging.INFO, logger="aevon.run")
            caplog.clear()  # only what the second pod logs (the first pod's diff may be captured already)
            second = worker(url, tmp_path / "pod-2", store)
            again = await second.plan(checkout, None)
            assert again.inverse_steps[PRIORITY] == MARK
            assert not [r for r in caplog.records if "migrate diff" in r.getMessage()]
            # and keeps it in its own state dir for its next plan
            assert [p.read_text() for p in (tmp_path / "pod-2" / "inverse-cache").glob("*.sql")] == [MARK]


async def test_a_shared_cache_the_worker_may_not_use_never_fails_the_plan(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    checkout = make_checkout(tmp_path / "app", MIGRATIONS)
    async with temp_database() as url, temp_database() as ledger_url:
        async with StateStore(SecretStr(ledger_url)):
            pass  # the schema, as the owner made it
        role = f"nocache_{tmp_path.name[-8:].replace('-', '_')}".lower()
        await fetch(ledger_url, f'CREATE ROLE "{role}" LOGIN')
        try:
            await fetch(ledger_url, f'GRANT SELECT ON aevon_schema_version TO "{role}"')  # to see the schema is set
            await fetch(ledger_url, f'REVOKE ALL ON aevon_inverse_cache FROM "{role}"')
            limited = ledger_url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
            async with StateStore(SecretStr(limited), create=False) as store:
                pod = worker(url, tmp_path / "pod", store)
                assert (await pod.apply(make_checkout(tmp_path / "v1", {INIT: MIGRATIONS[INIT]}))).applied == [INIT]
                caplog.set_level(logging.WARNING, logger="aevon.run")
                planned = await pod.plan(checkout, None)
            assert 'DROP COLUMN "priority"' in planned.inverse_steps[PRIORITY]  # diffed here instead
            said = [r.getMessage() for r in caplog.records]
            assert any("shared inverse cache could not be read (InsufficientPrivilegeError)" in m for m in said)
            assert any("could not keep a down script" in m for m in said)
        finally:
            await fetch(ledger_url, f'DROP OWNED BY "{role}"')
            await fetch(ledger_url, f'DROP ROLE "{role}"')

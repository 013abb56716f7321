"""Prisma migrate (the offline 6.19 toolkit of prisma_toolkit/) behind the Migrator protocol."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

from pglast.ast import TransactionStmt

from providers.errors import PermanentError
from providers.migrators import classify, phases
from providers.migrators.base import MigrationPlan, MigrationResult, MigrationStatus, MigratorContext
from providers.migrators.prisma import apply as lock_safe
from providers.migrators.prisma import consistency, interrupted, inverse, schema_file
from providers.migrators.prisma.cli import PROVIDER, TOOLKIT_DIR, CliResult, PrismaCli, _is_migration_name, _parse_lists
from providers.migrators.prisma.history import MigrationRow, MigrationsTable, summarize
from providers.migrators.prisma.inverse_diff import ShadowApplyFailed
from providers.migrators.prisma.revert import RevertFailed, revert_atomically, unmet
from providers.migrators.prisma.script import NotTransactional, transactional
from providers.models import Finding, Severity

log = logging.getLogger(__name__)


class PrismaMigrator(PrismaCli):
    """Runs `prisma migrate status|deploy` and `prisma db execute` of the toolkit against the environment database.

    The CLI runs, their environment and the scrubbing of every text returned or raised are PrismaCli's (cli.py);
    `_prisma_migrations` is read through MigrationsTable (history.py).
    """

    def __init__(
        self, ctx: MigratorContext, *, toolkit_dir: Path = TOOLKIT_DIR, timeout_s: float = 300.0
    ) -> None:
        super().__init__(ctx, toolkit_dir=toolkit_dir, timeout_s=timeout_s)
        self.table = MigrationsTable(ctx.database_url, self.scrub)

    # -- the Migrator protocol ------------------------------------------------------------------------------

    async def status(self, checkout: Path) -> MigrationStatus:
        """Applied, pending, failed migrations and drift: `prisma migrate status` cross-checked with the table.

        `migrate status` exits 1 when migrations are pending or failed: that is an answer, not an error. The
        `_prisma_migrations` table is the source of truth; the CLI's lists only add to `failed` and the message.
        """
        # Both at once (the CLI takes ~1.2 s); a table error cancels the CLI call, which then kills Prisma.
        cli_task = asyncio.create_task(self._cli(checkout, "migrate", "status"))
        try:
            rows = await self.table.rows()
        except BaseException:
            cli_task.cancel()
            await asyncio.gather(cli_task, return_exceptions=True)
            raise
        cli = await cli_task
        said = _parse_lists(cli.output)
        if cli.returncode != 0 and not said["pending"] and not said["failed"]:
            self._raise(cli, "migrate status")
        local = self.local_migrations(checkout)
        applied, failed, drift, notes = summarize(rows, local)
        failed += [n for n in said["failed"] if n not in failed]
        pending = [n for n in local if n not in applied and n not in failed]
        if said["pending"] and said["pending"] != pending:
            notes.append(f"prisma CLI lists pending {said['pending']}, the table says {pending}; trusting the table")
        message = "; ".join(
            [f"{len(applied)} applied, {len(pending)} pending, {len(failed)} failed", *notes]
        )
        unknown = sorted({r.name for r in rows if r.applied} - set(local))
        logs = {r.name: self.scrub(r.logs or "")[-1500:] for r in rows if r.failed and r.name in failed}
        return MigrationStatus(applied=applied, pending=pending, failed=failed, drift=drift, message=message,
                               unknown=unknown, failed_logs=logs)

    async def plan(self, checkout: Path, previous_checkout: Path | None) -> MigrationPlan:
        """Pending migrations, their findings (pglast) and their inverse (`migrate diff`); changes nothing.

        The inverse is judged before anything is applied: `inverse_loses_data` when the forward migrations destroy
        data (no down script brings it back) or the down script would destroy data that exists now; no inverse at
        all when a forward statement is one Prisma's diff cannot undo and a re-apply would then fail.
        """
        status = await self.status(checkout)
        fresh = not status.applied and status.pending and await self.table.database_is_empty()
        findings = await self.assess(checkout, status.pending, fresh=bool(fresh))
        if not status.pending:
            return MigrationPlan(findings=findings)
        if fresh:  # nothing existed before this deploy: nothing to invert, no `migrate diff` (issue 17)
            migrations = self._paths(checkout)[1]
            forward = [(m, (migrations / m / "migration.sql").read_text(errors="replace")) for m in status.pending]
            judged = inverse.nothing_to_invert(forward)
            split = phases.split(forward, fresh=True, unique=self._unique(checkout, status.pending))
            return MigrationPlan(pending=status.pending, findings=findings + judged.findings + split.findings,
                                 destructive=classify.is_destructive(findings), expand=split.expand,
                                 contract=split.contract)
        try:
            steps = await self._inverse_steps(checkout, status.pending)
        except ShadowApplyFailed as exc:  # it fails on an empty copy: it would fail here too, before any change
            invalid = Finding(message=f"invalid: {exc.migration} fails on a shadow database: {exc.output}",
                              severity=Severity.HIGH, location=f"{exc.migration}/migration.sql",
                              detail={"category": classify.Category.INVALID.value})
            return MigrationPlan(pending=status.pending, findings=[*findings, invalid],
                                 destructive=classify.is_destructive(findings))
        migrations = self._paths(checkout)[1]
        forward = [(m, (migrations / m / "migration.sql").read_text(errors="replace")) for m in status.pending]
        judged = await inverse.judge(forward, findings, steps, self.inverse_footprint)
        split = phases.split(forward, fresh=bool(fresh), unique=self._unique(checkout, status.pending))
        expand_loses: bool | None = None
        if split.contract:  # judge the expand phase's inverse alone: the contract migrations are never reverted
            expand_loses = split.expand != [] and (await inverse.judge(
                [f for f in forward if f[0] in split.expand],
                [f for f in findings if (f.location or "").split("/", 1)[0] in split.expand],
                {m: s for m, s in steps.items() if m in split.expand}, self.inverse_footprint)).loses_data
        return MigrationPlan(
            pending=status.pending,
            findings=findings + judged.findings + split.findings,
            destructive=classify.is_destructive(findings),
            inverse_sql=inverse.compose(judged.steps, status.pending) if judged.steps else None,
            inverse_steps=judged.steps,
            inverse_loses_data=judged.loses_data,
            expand_inverse_loses_data=expand_loses,
            inverse_preconditions=judged.preconditions,
            expand=split.expand, contract=split.contract,
        )

    async def readiness(self, checkout: Path, status: MigrationStatus) -> list[Finding]:
        """The migrations folder's consistency, each pending migration parsing (providers/migrators/consistency),
        and the truth about attempts killed inside `migrate deploy` (interrupted.py: a dry run, rolled back)."""
        schema, migrations = self._paths(checkout)
        local = self.local_migrations(checkout)
        judged = await interrupted.judge(self.table, migrations, local) if status.failed else []
        killed = [it.finding() for it in judged]
        for f in killed:
            f.message = self.scrub(f.message)
        return [*consistency.check_folder(schema, migrations), *schema_file.findings(schema),
                *consistency.check_pending(migrations, status.pending, status.applied), *killed]

    async def clean_leftovers(self) -> list[str]:
        """Drop the shadow databases a killed `migrate diff` left on this server (interrupted.py), as sentences."""
        async with self.table.connection("shadow databases") as conn:
            return await interrupted.drop_shadow_databases(conn)

    async def settle_interrupted(self, checkout: Path) -> list[str]:
        """Record what the schema proves about attempts killed inside `migrate deploy` (applied whole: finished;
        none of it: rolled back); unprovable ones stay as they are. Under the environment lock only."""
        migrations = self._paths(checkout)[1]
        local = self.local_migrations(checkout)
        found = await interrupted.judge(self.table, migrations, local)
        done = [self.scrub(s) for s in await interrupted.settle(self.table, found, local)]
        for line in done:
            log.warning("interrupted migration %s", line)
        return done

    async def inverse_footprint(self, inverse_sql: str | None) -> dict[str, int]:
        """Rows holding data in each table or column the inverse destroys (0 when absent); {} without an inverse."""
        if inverse_sql is None or inverse.is_empty(inverse_sql):
            return {}
        targets, _ = inverse.destroyed_by(inverse_sql)
        if not targets:
            return {}
        async with self.table.connection("inverse footprint") as conn:
            return await inverse.footprint(conn, targets)

    async def apply(
        self, checkout: Path, only: list[str] | None = None, forget_failed: bool = False
    ) -> MigrationResult:
        """`prisma migrate deploy` under the spec's lock and statement timeouts; returns what this call applied.

        `only`: apply just these, which must be the first pending migrations (the expand phase): Prisma then sees a
        copy of the folder without the others. Each migration script runs whole in one transaction; one that waits
        longer than `lock_timeout_ms` for a lock fails whole and is retried (`lock_retries`, doubling backoff), then
        MigrationLocked names the blocking session. Idempotent: nothing pending -> nothing applied. A migration
        PostgreSQL refuses -> PermanentError with Prisma's (scrubbed) output; an unreachable database ->
        TransientError.
        """
        local = self.local_migrations(checkout)  # validates the paths before anything runs
        rows = await self.table.rows()
        before = _applied_names(rows)
        migrations_dir: Path | None = None
        if only is not None:
            pending = [n for n in local if n not in before]
            if only != pending[:len(only)]:
                raise PermanentError(f"cannot apply {only} alone: the first pending migrations are "
                                     f"{pending[:len(only)]}", provider=PROVIDER, resource="migrate deploy")
            if only != pending:
                keep = [n for n in local if n in before or n in only]
                migrations_dir = lock_safe.subset_dir(self._paths(checkout)[1], keep, self.ctx.state_dir)

        async def run(app_name: str) -> CliResult:
            extra = {"PGAPPNAME": app_name, "PGOPTIONS": lock_safe.pg_options(self.ctx.spec)}
            return await self._cli(checkout, "migrate", "deploy", migrations_dir=migrations_dir, extra_env=extra)

        async def applied_now() -> set[str]:
            return _applied_names(await self.table.rows())

        try:
            cli, _, attempts = await lock_safe.deploy_with_retries(self.ctx.spec, self.table, run, applied_now)
        finally:
            if migrations_dir is not None:
                shutil.rmtree(migrations_dir.parent, ignore_errors=True)
        if cli.returncode != 0:
            if forget_failed:  # the contract phase: leave it pending for the next deploy, not failed
                await lock_safe.forget_failed(self.table, [r.name for r in await self.table.rows() if r.failed
                                                           and self._one_transaction(checkout, r.name)])
            self._raise(cli, "migrate deploy")
        after = await self.table.rows()
        new = [r.name for r in sorted(after, key=_finish_order) if r.applied and r.name not in before]
        log.info("prisma migrate deploy applied %d migration(s) in %.2fs (%d attempt(s)): %s", len(new),
                 cli.duration_s, attempts, new)
        return MigrationResult(applied=list(dict.fromkeys(new)), output=cli.output, duration_s=cli.duration_s)

    async def revert(self, checkout: Path, applied: list[str], inverse_sql: str | None) -> MigrationResult:
        """Run `inverse_sql` and forget `applied` in `_prisma_migrations`, in one transaction (asyncpg).

        Prisma's own BEGIN/COMMIT (enum recreation) are removed first, so nothing inside can commit part of the
        revert; a script holding what cannot run in one transaction is refused before anything runs. When
        PostgreSQL refuses a statement, the transaction is rolled back: the database is exactly as before and the
        PermanentError says so. Afterwards `status` lists them pending again and a later `apply` re-applies
        them. Idempotent: when none of them is recorded as applied any more, nothing runs.
        `MigrationResult.applied` lists the migrations this call reverted.
        """
        if inverse_sql is None:
            raise PermanentError(
                "no inverse migration is prepared for " + (", ".join(applied) or "these migrations"),
                provider=PROVIDER, resource="revert",
            )
        for name in applied:
            if not _is_migration_name(name):
                raise PermanentError(f"not a migration name: {name[:80]!r}", provider=PROVIDER, resource="revert")
        try:
            script = transactional(inverse_sql)
        except NotTransactional as exc:
            raise PermanentError(f"revert refused, nothing changed: {exc}", provider=PROVIDER,
                                 resource="revert") from None
        recorded = _applied_names(await self.table.rows())
        todo = [n for n in applied if n in recorded]
        if not todo:
            return MigrationResult(applied=[], output="nothing to revert: none of them is applied")
        if len(todo) != len(applied):
            missing = [n for n in applied if n not in recorded]
            raise PermanentError(
                f"cannot revert {todo}: {missing} are not recorded as applied (partial state, check by hand)",
                provider=PROVIDER, resource="revert",
            )
        started = time.monotonic()
        try:
            async with self.table.connection("revert") as conn:
                await revert_atomically(conn, script, todo)
        except RevertFailed as exc:
            raise PermanentError(
                f"revert of {', '.join(todo)} failed: {self.scrub(str(exc))}. It ran in one transaction, which was "
                f"rolled back: the database is as it was before the revert ({', '.join(todo)} stay applied)",
                provider=PROVIDER, resource="revert",
            ) from None
        duration = time.monotonic() - started
        log.info("prisma reverted %s in %.2fs", todo, duration)
        return MigrationResult(applied=todo, output=f"reverted {', '.join(todo)} in one transaction",
                               duration_s=duration)

    async def inverse_preconditions(self, inverse_sql: str | None) -> list[str]:
        """Why `inverse_sql` would fail on the database's data now ([] when it would succeed; [] without one).

        Checks the preconditions a query can state, then proves the whole inverse in a transaction that is rolled
        back (providers/migrators/prisma/revert.py `unmet`). Reasons are scrubbed of secrets.
        """
        if inverse_sql is None or inverse.is_empty(inverse_sql):
            return []
        async with self.table.connection("inverse preconditions") as conn:
            return [self.scrub(r) for r in await unmet(conn, inverse_sql)]

    # -- findings and the inverse ---------------------------------------------------------------------------

    async def assess(self, checkout: Path, pending: list[str], *, fresh: bool = False) -> list[Finding]:
        """One finding per statement of `pending` (additive, locking, destructive ...), parsed with pglast.

        `fresh`: the database is empty, so every object the statements touch is created by them (not destructive).
        """
        migrations = self._paths(checkout)[1]
        sources = [(m, (migrations / m / "migration.sql").read_text(errors="replace")) for m in pending
                   if (migrations / m / "migration.sql").is_file()]
        return classify.findings(sources, fresh=fresh, unique=self._unique(checkout, pending))

    def _one_transaction(self, checkout: Path, name: str) -> bool:
        """The migration's script holds no BEGIN/COMMIT of its own: a failure applied none of it."""
        sql = self._paths(checkout)[1] / name / "migration.sql"
        try:
            return sql.is_file() and not any(isinstance(s.node, TransactionStmt)
                                             for s in classify.split_statements(name, sql.read_text()))
        except classify.SqlParseError:
            return False

    def _unique(self, checkout: Path, pending: list[str]) -> set[str]:
        """Unique indexes and constraints the checkout's other (applied) migrations create."""
        migrations = self._paths(checkout)[1]
        return phases.unique_in((m, (migrations / m / "migration.sql").read_text(errors="replace"))
                                for m in self.local_migrations(checkout) if m not in pending)


def make_migrator(ctx: MigratorContext) -> PrismaMigrator:
    """Registry factory (providers/registry.py MIGRATORS["prisma"]).

    `ctx.spec.settings` may set `toolkit_dir` (another install of the toolkit) and `timeout_s` (per CLI call).
    """
    settings = ctx.spec.settings
    toolkit = Path(str(settings.get("toolkit_dir", TOOLKIT_DIR)))
    return PrismaMigrator(ctx, toolkit_dir=toolkit, timeout_s=float(settings.get("timeout_s", 300.0)))


def _applied_names(rows: list[MigrationRow]) -> set[str]:
    return {r.name for r in rows if r.applied}


def _finish_order(row: MigrationRow) -> tuple[float, str]:
    return (row.finished_at.timestamp() if row.finished_at else 0.0, row.name)

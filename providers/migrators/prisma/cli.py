"""The toolkit's Prisma CLI run as a subprocess for a checkout: its environment, scrubbed output, error kind."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from providers import process_groups
from providers.errors import PermanentError, TransientError
from providers.migrators.base import MigratorContext
from providers.migrators.prisma import inverse_diff, schema_file
from providers.process_env import child_env

log = logging.getLogger(__name__)

PROVIDER = "prisma"
TOOLKIT_DIR = Path(__file__).resolve().parent / "toolkit"
SETUP_HINT = "run scripts/setup-prisma.sh (npm ci of providers/migrators/prisma/toolkit)"
_OUTPUT_LIMIT = 4000
# Prisma's "could not connect" family (P1001 unreachable, P1002 timeout, P1017 closed) and node socket errors.
_TRANSIENT_RE = re.compile(
    r"Can't reach database server|P100[12]\b|P1017\b|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EAI_AGAIN|"
    r"Connection terminated|server closed the connection|the database system is (starting|shutting) up|"
    r"too many clients",
    re.IGNORECASE,
)
# The adapter warning Prisma prints on every call (the recipe keeps `url` in the schema on purpose).
_NOISE_RE = re.compile(
    r"WARNING: Your schema specifies the following datasource properties.*?only using driver adapters\.\n*",
    re.DOTALL,
)
_LIST_HEADERS = {
    "pending": re.compile(r"^Following migrations? ha(?:ve|s) not yet been applied:$"),
    "failed": re.compile(r"^Following migrations? ha(?:ve|s) failed:$"),
}


@dataclass(frozen=True)
class CliResult:
    """One Prisma CLI run: its arguments (no secrets in them), exit code, scrubbed output and duration."""

    args: tuple[str, ...]
    returncode: int
    output: str
    duration_s: float
    stdout: str = ""  # only when asked for apart from the rest (a script `migrate diff` prints): not scrubbed


class PrismaCli:
    """Runs the toolkit's `prisma` for a checkout against the environment database (base of PrismaMigrator).

    The database URL reaches Prisma through the subprocess environment only; every text this class returns or
    raises is scrubbed of the URL and its password. Each CLI call costs about 1-1.5 s (wasm schema engine).
    """

    def __init__(self, ctx: MigratorContext, *, toolkit_dir: Path = TOOLKIT_DIR, timeout_s: float = 300.0) -> None:
        self.ctx = ctx
        self.toolkit_dir = toolkit_dir.resolve()
        self.timeout_s = timeout_s
        self._secrets = _secrets_of(ctx.database_url.get_secret_value())

    def local_migrations(self, checkout: Path) -> dict[str, set[str]]:
        """Migration folders of `checkout` in apply order -> accepted checksums of their migration.sql."""
        migrations = self._paths(checkout)[1]
        found: dict[str, set[str]] = {}
        for sql in sorted(migrations.glob("*/migration.sql")):
            data = sql.read_bytes()
            lf = data.replace(b"\r\n", b"\n")
            found[sql.parent.name] = {hashlib.sha256(v).hexdigest() for v in (data, lf, lf.replace(b"\n", b"\r\n"))}
        return found

    def scrub(self, text: str) -> str:
        """`text` without the database URL, its password, or any `scheme://user:password@` credentials."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return re.sub(r"(\w+://[^\s:/@]*:)[^\s@]+@", r"\1***@", text)

    def _paths(self, checkout: Path) -> tuple[Path, Path]:
        root = checkout.resolve()
        paths = []
        spec = self.ctx.spec
        for field, rel in (("schema_path", spec.schema_path), ("migrations_path", spec.migrations_path)):
            path = (root / rel).resolve()
            if not path.is_relative_to(root) or not path.exists():
                raise PermanentError(
                    f"database.{field} {rel!r} does not exist inside the checkout",
                    provider=PROVIDER, resource=str(root),
                )
            paths.append(path)
        return paths[0], paths[1]

    def _env(self, checkout: Path, migrations_dir: Path | None = None) -> dict[str, str]:
        schema, migrations = self._paths(checkout)
        migrations = migrations_dir or migrations
        env = child_env(keep=schema_file.env_names(schema))  # never the run's vendor tokens
        url = self.ctx.database_url.get_secret_value()
        # The datasource's url / directUrl env() names (POSTGRES_PRISMA_URL ...) are this database; other names the
        # schema reads pass from the environment as they are (the readiness gate says which are missing).
        env.update(dict.fromkeys(schema_file.filled_with_database_url(schema), url))
        env.update(
            DATABASE_URL=url,
            AEVON_PRISMA_SCHEMA=str(schema),
            AEVON_PRISMA_MIGRATIONS=str(migrations),
            CHECKPOINT_DISABLE="1",
            PRISMA_HIDE_UPDATE_MESSAGE="1",
            NO_COLOR="1",
            NODE_OPTIONS=f"--require {self.toolkit_dir / 'unref-long-timers.cjs'}",
        )
        return env

    async def _cli(self, checkout: Path, *args: str, stdin: str | None = None, split: bool = False,
                   migrations_dir: Path | None = None, extra_env: dict[str, str] | None = None) -> CliResult:
        prisma = self.toolkit_dir / "node_modules" / ".bin" / "prisma"
        if not prisma.exists():
            raise PermanentError(f"the Prisma toolkit is not installed: {SETUP_HINT}", provider=PROVIDER)
        argv = [str(prisma), *args, "--config", str(self.toolkit_dir / "prisma.config.ts")]
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=self.toolkit_dir, env={**self._env(checkout, migrations_dir), **(extra_env or {})},
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE if split else asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own group, in the run's pid files: the next run kills what a kill left
        )
        with process_groups.recorded(proc.pid):
            try:
                data = stdin.encode() if stdin is not None else None
                out, err = await asyncio.wait_for(proc.communicate(data), self.timeout_s)
            except TimeoutError as exc:
                await _kill(proc)
                raise TransientError(
                    f"prisma {' '.join(args[:2])} timed out after {self.timeout_s:.0f}s", provider=PROVIDER
                ) from exc
            except BaseException:  # cancelled: never leave a Prisma process behind
                await _kill(proc)
                raise
        duration = time.monotonic() - started
        said = err if split else out
        text = _NOISE_RE.sub("", self.scrub(said.decode(errors="replace")))
        rc = proc.returncode if proc.returncode is not None else -1
        log.info("prisma %s: exit %d in %.2fs", " ".join(args[:2]), rc, duration)
        return CliResult(tuple(args), rc, text.strip(), duration, out.decode(errors="replace") if split else "")

    async def _inverse_steps(self, checkout: Path, pending: list[str]) -> dict[str, str]:
        """Per pending migration its down script (inverse_diff.py), Prisma run from here."""
        migrations = self._paths(checkout)[1]
        base = [name for name in self.local_migrations(checkout) if name not in pending]

        async def diff(from_dir: Path, to_dir: Path) -> str:
            cli = await self._cli(checkout, "migrate", "diff", "--from-migrations", str(from_dir),
                                  "--to-migrations", str(to_dir), "--script", split=True)
            if cli.returncode != 0:
                shadow = inverse_diff.shadow_failure(cli.output)
                if shadow is not None:
                    raise shadow
                self._raise(cli, "migrate diff (inverse)")
            return cli.stdout

        return await inverse_diff.inverse_steps(migrations, base, pending, self.ctx.state_dir, diff,
                                                cache=self.ctx.state_dir / "inverse-cache", shared=self.ctx.shared)

    def _raise(self, cli: CliResult, action: str) -> None:
        tail = cli.output[-_OUTPUT_LIMIT:]
        kind = TransientError if _TRANSIENT_RE.search(cli.output) else PermanentError
        raise kind(f"{action} failed (exit {cli.returncode}):\n{tail}", provider=PROVIDER, resource=action)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await asyncio.shield(proc.wait())


def _secrets_of(url: str) -> list[str]:
    secrets = [url]
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        secrets += [password, unquote(password)]
    return sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)


def _parse_lists(output: str) -> dict[str, list[str]]:
    """The migration names under `migrate status`'s "have not yet been applied" / "have failed" headers."""
    lists: dict[str, list[str]] = {"pending": [], "failed": []}
    current: list[str] | None = None
    for raw in output.splitlines():
        line = raw.strip()
        header = next((k for k, rx in _LIST_HEADERS.items() if rx.match(line)), None)
        if header is not None:
            current = lists[header]
        elif current is not None and _is_migration_name(line):
            current.append(line)
        else:
            current = None
    return lists


def _is_migration_name(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}", name) is not None

"""The inverse cache (issue 17): keys follow the whole history up to each migration; a hit runs no diff."""

from __future__ import annotations

import asyncio
from pathlib import Path

from providers.migrators.prisma.inverse import nothing_to_invert
from providers.migrators.prisma.inverse_diff import inverse_steps, step_keys


def history(root: Path, migrations: dict[str, str]) -> Path:
    folder = root / "migrations"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "migration_lock.toml").write_text('provider = "postgresql"\n')
    for name, sql in migrations.items():
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "migration.sql").write_text(sql)
    return folder


class Diff:
    """Stands in for `prisma migrate diff`: the down script names the migration the `from` folder adds."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, from_dir: Path, to_dir: Path) -> str:
        added = sorted({p.name for p in from_dir.iterdir()} - {p.name for p in to_dir.iterdir()})
        assert len(added) == 1, added
        self.calls.append(added[0])
        return f'DROP TABLE "{added[0]}";\n'


def test_keys_change_with_any_earlier_migration(tmp_path: Path) -> None:
    folder = history(tmp_path / "a", {"m1": "CREATE TABLE a (i int);", "m2": "CREATE TABLE b (i int);",
                                      "m3": "CREATE TABLE c (i int);"})
    keys = step_keys(folder, ["m1"], ["m2", "m3"])
    assert len(set(keys)) == 2
    assert step_keys(folder, ["m1"], ["m2", "m3"]) == keys  # deterministic
    assert step_keys(folder, [], ["m1", "m2", "m3"])[1:] == keys  # the same history, whatever is applied
    (folder / "m1" / "migration.sql").write_text("CREATE TABLE a (i bigint);")  # an edited base migration
    edited = step_keys(folder, ["m1"], ["m2", "m3"])
    assert not set(edited) & set(keys)


def test_a_second_plan_runs_no_diff_and_an_edit_rediffs_only_what_follows(tmp_path: Path) -> None:
    folder = history(tmp_path / "a", {f"m{i}": f"CREATE TABLE t{i} (i int);" for i in range(1, 6)})
    cache, work = tmp_path / "cache", tmp_path / "work"
    diff = Diff()
    first = asyncio.run(inverse_steps(folder, ["m1"], ["m2", "m3", "m4", "m5"], work, diff, cache=cache))
    assert sorted(diff.calls) == ["m2", "m3", "m4", "m5"]
    assert first["m4"] == 'DROP TABLE "m4";\n'
    diff.calls.clear()
    again = asyncio.run(inverse_steps(folder, ["m1"], ["m2", "m3", "m4", "m5"], work, diff, cache=cache))
    assert (again, diff.calls) == (first, [])
    (folder / "m4" / "migration.sql").write_text("CREATE TABLE t4 (i bigint);")
    asyncio.run(inverse_steps(folder, ["m1"], ["m2", "m3", "m4", "m5"], work, diff, cache=cache))
    assert sorted(diff.calls) == ["m4", "m5"]  # m2, m3 unchanged: from the cache
    assert not list(work.iterdir())  # scratch folders removed


def test_a_failed_diff_is_not_cached(tmp_path: Path) -> None:
    folder = history(tmp_path / "a", {"m1": "x", "m2": "y"})

    async def broken(from_dir: Path, to_dir: Path) -> str:
        raise RuntimeError("shadow database failed")

    try:
        asyncio.run(inverse_steps(folder, [], ["m1", "m2"], tmp_path / "w", broken, cache=tmp_path / "cache"))
    except RuntimeError:
        pass
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.sql"))


def test_nothing_to_invert_still_lists_what_a_diff_would_not_undo() -> None:
    judged = nothing_to_invert([("m1", 'CREATE TABLE "T" (i int);\nCREATE EXTENSION pgcrypto;\n'), ("m2", "")])
    assert judged.steps == {} and not judged.loses_data
    messages = [f.message for f in judged.findings]
    assert any("extension pgcrypto" in m for m in messages)
    assert messages[-1].startswith("inverse: no inverse for m1 .. m2 (2): the database was empty")

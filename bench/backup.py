"""Dump, restore and verify time for a generated ~1 GB Mastodon-shaped database on the local PostgreSQL 15.

The commands are the backup task's own (mastofargate/data/backup/pgtask.py), run as the task runs them:
  dump     pgtask.py dump --to DIR/            pg_dump -Fc + sha256 + manifest
  restore  pg_restore --jobs=2 into a new database (what a restore into a fresh database costs)
  verify   pgtask.py verify --scratch           checksum, a throw-away cluster, restore, checks (the drill)
Dumps go to a local file, not S3: this measures the database work; S3 throughput depends on the network.
Needs scripts/ensure-postgres.sh; runs as the `postgres` user when started as root. Not part of `make test`:
`make bench-backup` (or `make bench`). BENCH_BACKUP_RUNS (default 3) runs of each; medians printed.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.pg_support import BINDIR, cluster, pgtask, private_dir, require_postgres, run, seed_mastodon  # noqa: E402

TARGET_BYTES = int(float(os.environ.get("BENCH_BACKUP_GB", "1")) * 1e9)
RUNS = int(os.environ.get("BENCH_BACKUP_RUNS", "3"))
BATCH = 200_000


def grow(c, database: str) -> int:
    """Add statuses (≈ 330 bytes of HTML-like text each, compressing about 2:1) until the database is big enough."""
    next_id = 1_000_000
    while True:
        size = int(c.sql(f"SELECT pg_database_size('{database}')")[0][0])
        if size >= TARGET_BYTES:
            return size
        c.sql(
            f"""INSERT INTO statuses (id, uri, text, account_id, visibility, created_at, updated_at)
            SELECT g, 'https://social.example.org/users/u/statuses/' || g,
                   '<p>Status ' || g || ' by @user' || (g % 24) || ': '
                   || md5(g::text) || ' ' || md5((g * 3)::text) || ' ' || md5((g * 7)::text) || ' '
                   || md5((g * 11)::text) || ' ' || md5((g * 13)::text) || ' ' || md5((g * 17)::text)
                   || ' <a href="https://example.org/tags/mastodon">#mastodon</a></p>',
                   1 + g % 24, g % 4, now(), now()
            FROM generate_series({next_id}, {next_id + BATCH - 1}) g""",
            database,
        )
        next_id += BATCH


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    require_postgres_outside_pytest()
    settings = {"shared_buffers": "256MB", "max_wal_size": "4GB", "checkpoint_timeout": "30min"}
    with cluster("bench-", settings) as c:
        start = time.perf_counter()
        seed_mastodon(c)
        size = grow(c, "mastodon_production")
        c.sql("VACUUM ANALYZE", "mastodon_production")
        print(f"generated {size / 1e9:.2f} GB in {time.perf_counter() - start:.0f} s", flush=True)
        env = c.env("mastodon_production")
        work = private_dir("bench-dumps-")
        dumps, restores, verifies = [], [], []
        try:
            for i in range(RUNS):
                out = work / f"run{i}"
                out.mkdir()
                shutil.chown(out, "postgres", "postgres") if os.geteuid() == 0 else None
                result: dict = {}

                def dump(out: Path = out, result: dict = result) -> None:
                    proc = pgtask(["dump", "--to", f"{out}/", "--label", "bench"], env, check=True)
                    result.update(json.loads(proc.stdout.strip().splitlines()[-1]))

                dumps.append(timed(dump))
                path = result["location"]
                name = f"bench_restore_{i}"
                c.sql(f"CREATE DATABASE {name}")
                restore = [str(BINDIR / "pg_restore"), "--no-owner", "--no-acl", "--exit-on-error", "--jobs=2"]
                restores.append(
                    timed(lambda restore=restore, path=path, name=name: run([*restore, "-d", name, path], env=c.env()))
                )
                c.sql(f"DROP DATABASE {name}")
                verifies.append(
                    timed(
                        lambda path=path: pgtask(
                            ["verify", "--from", path, "--scratch", "--jobs", "2"], env, check=True
                        )
                    )
                )
                print(
                    f"run {i + 1}/{RUNS}: dump {dumps[-1]:.1f} s ({result['size'] / 1e6:.0f} MB), "
                    f"restore {restores[-1]:.1f} s, verify {verifies[-1]:.1f} s",
                    flush=True,
                )
                shutil.rmtree(out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"database {size / 1e9:.2f} GB, dump file {result['size'] / 1e6:.0f} MB, {RUNS} runs, medians:")
    for label, values in (
        ("dump (pg_dump -Fc + sha256 + manifest)", dumps),
        ("restore (pg_restore -j2)", restores),
        ("verify (checksum + scratch cluster + restore + checks)", verifies),
    ):
        print(f"  {label:58} {statistics.median(values):7.1f} s")


def require_postgres_outside_pytest() -> None:
    import pytest

    try:
        require_postgres()
    except pytest.skip.Exception as e:
        sys.exit(f"bench/backup.py: {e}")


if __name__ == "__main__":
    main()

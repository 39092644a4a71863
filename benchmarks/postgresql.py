"""Benchmark: adcp-backup on PostgreSQL side by side with pg_dump -Fc / pg_restore on the same tables.

    .venv/bin/python benchmarks/postgresql.py [--server postgres://postgres@127.0.0.1:5432] [--database adcp_bench]
                                              [--repeat 3] [--scale 10]

Seeds 1,000 tenants, 100,000 products and 10,000 embeddings of dimension 384 (times --scale) into a scratch
database (dropped and created again), then runs each command as its own child process and reports wall time, the
child's peak RSS and the file size (benchmarks/timing.py measures, as for mysql.py).
"""
from __future__ import annotations

import os
import subprocess

from timing import RESTORE_GZIP, TABLES, Bench, arguments


def psql(server: str, sql: str) -> None:
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", f"{server}/postgres", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main() -> None:
    args = arguments(__doc__.splitlines()[0],
                     os.environ.get("ADCP_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432"))
    bench = Bench.create(f"{args.server}/{args.database}", args.repeat, "adcp-bench-pg-")
    psql(args.server, f"DROP DATABASE IF EXISTS {args.database}")
    psql(args.server, f"CREATE DATABASE {args.database}")
    bench.seed(args.scale)
    subprocess.run(["psql", "-q", bench.url, "-c", "VACUUM ANALYZE"], check=True)

    dump = bench.work / "tables.dump"
    table_args = [a for t in TABLES for a in ("-t", t)]
    bench.run("pg_dump -Fc", ["pg_dump", "-Fc", *table_args, "-f", str(dump), bench.url], dump, keep_output=True)
    gz, zst = bench.run_adcp_backup()
    bench.run("pg_restore --clean --single-transaction", ["pg_restore", "--clean", "--if-exists",
                                                          "--single-transaction", "-d", bench.url, str(dump)])
    bench.run_adcp_restore(gz, zst)
    bench.run("backup_restore --dry-run (gzip)", [*bench.manage, "backup_restore", str(gz), "--dry-run"])

    bench.summary(("pg_dump -Fc", "pg_dump -Fc"), ("pg_restore", "pg_restore --clean --single-transaction"), 1.5)
    print(f"{'dry run / restore (gzip):':<27}"
          f"{bench.wall('backup_restore --dry-run (gzip)') / bench.wall(RESTORE_GZIP):.2f}x (target <= 2)")
    psql(args.server, f"DROP DATABASE IF EXISTS {args.database}")


if __name__ == "__main__":
    main()

"""Benchmark: adcp-backup on MariaDB side by side with mysqldump | gzip and mysql < dump on the same tables.

    .venv/bin/python benchmarks/mysql.py [--server mysql://root@127.0.0.1:3306] [--database adcp_bench]
                                         [--repeat 3] [--scale 10]

Seeds 1,000 tenants, 100,000 products and 10,000 embeddings of dimension 384 (times --scale) into a scratch
database (dropped and created again), then runs each command as its own child process and reports wall time,
the child's peak RSS and the file size, as benchmarks/postgresql.py does for PostgreSQL. The engines' tools:
`mysqldump --single-transaction` of the four tables, piped through `gzip -1` (and once without it, to the file
`mysql` restores), and `mysql DATABASE < dump.sql`, which drops and recreates the tables and inserts the rows
with multi-row INSERTs; adcp-backup restores into the existing tables in one transaction.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from postgresql import PROJECT, SIZE, TABLES, measure, measure_child, scaled


def client_args(server: str) -> list[str]:
    """-h/-P/-u (and -p) for the MariaDB command-line tools, from a mysql:// URL."""
    url = urlsplit(server)
    args = ["--protocol=tcp", "-h", url.hostname or "127.0.0.1", "-P", str(url.port or 3306),
            "-u", url.username or "root"]
    if url.password:
        args.append(f"-p{url.password}")
    return args


def mysql(server: str, sql: str) -> None:
    subprocess.run(["mysql", *client_args(server), "-e", sql], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("ADCP_BENCH_MYSQL", "mysql://root@127.0.0.1:3306"))
    parser.add_argument("--database", default="adcp_bench")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each command (the median is reported).")
    parser.add_argument("--scale", type=float, default=1, help="Multiplies the tenants, products and embeddings.")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure_child(args.command)
        return

    url = f"{args.server}/{args.database}"
    work = Path(tempfile.mkdtemp(prefix="adcp-bench-mysql-"))
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "project.settings",
           "ADCP_BACKUP_DIR": str(work / "backups"), "ADCP_BACKUP_SETTINGS_FILES": str(work / "app_settings.json"),
           "ADCP_BACKUP_LOG_FILE": str(work / "backup_operations.log"), "BENCH_CWD": str(work)}
    manage = [sys.executable, str(PROJECT / "manage.py")]
    client = " ".join(shlex.quote(a) for a in client_args(args.server))

    mysql(args.server, f"DROP DATABASE IF EXISTS {args.database}")
    mysql(args.server, f"CREATE DATABASE {args.database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    size = scaled(SIZE, args.scale)
    print(f"Seeding {url}: {size}", flush=True)
    subprocess.run([*manage, "adcp_demo", *[f"--{k}={v}" for k, v in size.items()]], env=env, cwd=work,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    mysql(args.server, f"ANALYZE TABLE {', '.join(f'{args.database}.{t}' for t in TABLES)}")

    dump, dump_gz = work / "tables.sql", work / "tables.sql.gz"
    tables = " ".join(TABLES)
    mysqldump = f"mysqldump {client} --single-transaction {args.database} {tables}"
    results: list[tuple[str, dict[str, Any]]] = []

    def run(label: str, command: list[str], output: Path | None = None) -> None:
        # The median wall time of a few runs (this machine is shared), the largest peak RSS of them.
        runs = []
        for _ in range(args.repeat):
            if output is not None and output.exists():
                output.unlink()
            runs.append(measure(command, env))
        walls = sorted(r["wall"] for r in runs)
        numbers: dict[str, Any] = {"wall": walls[len(walls) // 2], "peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}
        if output is not None:
            numbers["size_mib"] = output.stat().st_size / 2**20
        results.append((label, numbers))
        print(f"{label:<42} {numbers['wall']:6.2f} s  {numbers['peak_rss_mib']:6.1f} MiB"
              + (f"  {numbers['size_mib']:7.1f} MiB" if "size_mib" in numbers else ""), flush=True)

    run("mysqldump --single-transaction | gzip -1", ["sh", "-c", f"{mysqldump} | gzip -1 > {dump_gz}"], dump_gz)
    run("mysqldump --single-transaction", ["sh", "-c", f"{mysqldump} > {dump}"], dump)
    gz, zst = work / "backup.jsonl.gz", work / "backup.jsonl.zst"
    run("backup_create --compress (gzip level 1)", [*manage, "backup_create", "--compress", "--no-settings",
                                                    "--output", str(gz)], gz)
    run("backup_create --compression zstd", [*manage, "backup_create", "--compression", "zstd", "--no-settings",
                                             "--output", str(zst)], zst)
    run("mysql < dump.sql", ["sh", "-c", f"mysql {client} {args.database} < {dump}"])
    run("backup_restore (gzip)", [*manage, "backup_restore", str(gz), "--force", "--no-safety-backup"])
    run("backup_restore (zstd)", [*manage, "backup_restore", str(zst), "--force", "--no-safety-backup"])

    by_label = dict(results)
    backup = min(by_label["backup_create --compress (gzip level 1)"]["wall"],
                 by_label["backup_create --compression zstd"]["wall"])
    restore = min(by_label["backup_restore (gzip)"]["wall"], by_label["backup_restore (zstd)"]["wall"])
    peak = max(n["peak_rss_mib"] for label, n in results if label.startswith("backup_"))
    print(f"\nbackup / mysqldump | gzip: {backup / by_label['mysqldump --single-transaction | gzip -1']['wall']:.2f}x "
          "(target <= 1)")
    print(f"restore / mysql < dump:    {restore / by_label['mysql < dump.sql']['wall']:.2f}x (target <= 1.2)")
    print(f"peak RSS of adcp-backup:   {peak:.1f} MiB (target < 150)")
    mysql(args.server, f"DROP DATABASE IF EXISTS {args.database}")


if __name__ == "__main__":
    main()

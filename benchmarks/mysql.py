"""Benchmark: adcp-backup on MariaDB side by side with mysqldump | gzip and mysql < dump on the same tables.

    .venv/bin/python benchmarks/mysql.py [--server mysql://root@127.0.0.1:3306] [--database adcp_bench]
                                         [--repeat 3] [--scale 10]

Seeds 1,000 tenants, 100,000 products and 10,000 embeddings of dimension 384 (times --scale) into a scratch
database (dropped and created again), then runs each command as its own child process and reports wall time,
the child's peak RSS and the file size (benchmarks/timing.py measures), as postgresql.py does for PostgreSQL. The
engines' tools: `mysqldump --single-transaction` of the four tables, piped through `gzip -1` (and once without
it, to the file `mysql` restores), and `mysql DATABASE < dump.sql`, which drops and recreates the tables and inserts
the rows with multi-row INSERTs; adcp-backup restores into the existing tables in one transaction.
"""
from __future__ import annotations

import os
import shlex
import subprocess
from urllib.parse import urlsplit

from timing import TABLES, Bench, arguments


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
    args = arguments(__doc__.splitlines()[0], os.environ.get("ADCP_BENCH_MYSQL", "mysql://root@127.0.0.1:3306"))
    bench = Bench.create(f"{args.server}/{args.database}", args.repeat, "adcp-bench-mysql-")
    client = " ".join(shlex.quote(a) for a in client_args(args.server))
    mysql(args.server, f"DROP DATABASE IF EXISTS {args.database}")
    mysql(args.server, f"CREATE DATABASE {args.database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    bench.seed(args.scale)
    mysql(args.server, f"ANALYZE TABLE {', '.join(f'{args.database}.{t}' for t in TABLES)}")

    dump, dump_gz = bench.work / "tables.sql", bench.work / "tables.sql.gz"
    mysqldump = f"mysqldump {client} --single-transaction {args.database} {' '.join(TABLES)}"
    bench.run("mysqldump --single-transaction | gzip -1", ["sh", "-c", f"{mysqldump} | gzip -1 > {dump_gz}"],
              dump_gz)
    bench.run("mysqldump --single-transaction", ["sh", "-c", f"{mysqldump} > {dump}"], dump)
    gz, zst = bench.run_adcp_backup()
    bench.run("mysql < dump.sql", ["sh", "-c", f"mysql {client} {args.database} < {dump}"])
    bench.run_adcp_restore(gz, zst)

    bench.summary(("mysqldump | gzip", "mysqldump --single-transaction | gzip -1"),
                  ("mysql < dump", "mysql < dump.sql"), 1.2)
    mysql(args.server, f"DROP DATABASE IF EXISTS {args.database}")


if __name__ == "__main__":
    main()

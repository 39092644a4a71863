"""Benchmark: adcp-backup on PostgreSQL side by side with pg_dump -Fc / pg_restore on the same tables.

    .venv/bin/python benchmarks/postgresql.py [--server postgres://postgres@127.0.0.1:5432] [--database adcp_bench]
                                              [--repeat 3] [--scale 10]

Seeds 1,000 tenants, 100,000 products and 10,000 embeddings of dimension 384 (times --scale) into a scratch
database (dropped and created again), then runs each command as its own child process and reports wall time, the
child's peak RSS and the file size. Each command runs under a fresh wrapper process whose only child it is,
so getrusage(RUSAGE_CHILDREN).ru_maxrss is that command's own peak.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
TABLES = ["tenant", "product", "externalagent", "product_embeddings"]
SIZE = {"tenants": 1000, "products": 100_000, "agents": 10, "embeddings": 10_000, "dim": 384}


def measure_child(command: list[str]) -> None:
    """Wrapper mode: run one command, print its wall time and peak RSS as JSON."""
    started = time.perf_counter()
    completed = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    if completed.returncode:
        sys.stderr.write(completed.stderr.decode(errors="replace"))
        raise SystemExit(completed.returncode)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(json.dumps({"wall": wall, "peak_rss_mib": peak_kib / 1024}))


def scaled(size: dict[str, int], scale: float) -> dict[str, int]:
    """The data size times ``scale``; the agents and the embedding dimension stay as they are."""
    return {k: v if k in ("agents", "dim") else max(1, round(v * scale)) for k, v in size.items()}


def measure(command: list[str], env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--measure", "--", *command], env=env, cwd=env["BENCH_CWD"],
                         stdout=subprocess.PIPE, check=True)
    return json.loads(out.stdout)


def psql(server: str, sql: str) -> None:
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", f"{server}/postgres", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("ADCP_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432"))
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
    work = Path(tempfile.mkdtemp(prefix="adcp-bench-pg-"))
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "project.settings",
           "ADCP_BACKUP_DIR": str(work / "backups"), "ADCP_BACKUP_SETTINGS_FILES": str(work / "app_settings.json"),
           "ADCP_BACKUP_LOG_FILE": str(work / "backup_operations.log"), "BENCH_CWD": str(work)}
    manage = [sys.executable, str(PROJECT / "manage.py")]

    psql(args.server, f"DROP DATABASE IF EXISTS {args.database}")
    psql(args.server, f"CREATE DATABASE {args.database}")
    size = scaled(SIZE, args.scale)
    print(f"Seeding {url}: {size}", flush=True)
    subprocess.run([*manage, "adcp_demo", *[f"--{k}={v}" for k, v in size.items()]], env=env, cwd=work,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    subprocess.run(["psql", "-q", url, "-c", "VACUUM ANALYZE"], check=True)

    dump = work / "tables.dump"
    table_args = [a for t in TABLES for a in ("-t", t)]
    results: list[tuple[str, dict[str, Any]]] = []

    def run(label: str, command: list[str], output: Path | None = None) -> None:
        # The median wall time of a few runs (this machine is shared), the largest peak RSS of them.
        runs = []
        for _ in range(args.repeat):
            if output is not None and output.exists() and not label.startswith("pg_dump"):
                output.unlink()
            runs.append(measure(command, env))
        walls = sorted(r["wall"] for r in runs)
        numbers: dict[str, Any] = {"wall": walls[len(walls) // 2], "peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}
        if output is not None:
            numbers["size_mib"] = output.stat().st_size / 2**20
        results.append((label, numbers))
        print(f"{label:<42} {numbers['wall']:6.2f} s  {numbers['peak_rss_mib']:6.1f} MiB"
              + (f"  {numbers['size_mib']:7.1f} MiB" if "size_mib" in numbers else ""), flush=True)

    run("pg_dump -Fc", ["pg_dump", "-Fc", *table_args, "-f", str(dump), url], dump)
    gz, zst = work / "backup.jsonl.gz", work / "backup.jsonl.zst"
    run("backup_create --compress (gzip level 1)", [*manage, "backup_create", "--compress", "--no-settings",
                                                    "--output", str(gz)], gz)
    run("backup_create --compression zstd", [*manage, "backup_create", "--compression", "zstd", "--no-settings",
                                             "--output", str(zst)], zst)
    run("pg_restore --clean --single-transaction", ["pg_restore", "--clean", "--if-exists", "--single-transaction",
                                                    "-d", url, str(dump)])
    run("backup_restore (gzip)", [*manage, "backup_restore", str(gz), "--force", "--no-safety-backup"])
    run("backup_restore (zstd)", [*manage, "backup_restore", str(zst), "--force", "--no-safety-backup"])
    run("backup_restore --dry-run (gzip)", [*manage, "backup_restore", str(gz), "--dry-run"])

    by_label = dict(results)
    backup = min(by_label["backup_create --compress (gzip level 1)"]["wall"],
                 by_label["backup_create --compression zstd"]["wall"])
    restore = min(by_label["backup_restore (gzip)"]["wall"], by_label["backup_restore (zstd)"]["wall"])
    peak = max(n["peak_rss_mib"] for label, n in results if label.startswith("backup_"))
    print(f"\nbackup / pg_dump -Fc:     {backup / by_label['pg_dump -Fc']['wall']:.2f}x (target <= 1)")
    print(f"restore / pg_restore:     {restore / by_label['pg_restore --clean --single-transaction']['wall']:.2f}x "
          "(target <= 1.5)")
    print(f"peak RSS of adcp-backup:  {peak:.1f} MiB (target < 150)")
    dry = by_label["backup_restore --dry-run (gzip)"]["wall"] / by_label["backup_restore (gzip)"]["wall"]
    print(f"dry run / restore (gzip): {dry:.2f}x (target <= 2)")
    psql(args.server, f"DROP DATABASE IF EXISTS {args.database}")


if __name__ == "__main__":
    main()

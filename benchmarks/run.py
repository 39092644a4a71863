#!/usr/bin/env python
"""Benchmark on SQLite: adcp-backup against Django's dumpdata/loaddata on the same data, in one run.

Seeds a scratch database (default 1,000 tenants, 100,000 products, 10,000 embeddings of dimension 384),
then runs every command as its own child process and reports wall time, the child's peak RSS (from
wait4, so each figure is that command's alone) and file size. Usage:

    .venv/bin/python benchmarks/run.py [--scale 10] [--skip-django] [--markdown]

A dry run of the same file is timed too: it does the whole restore and compares it with the rows it replaced.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["adcp_backup.Tenant", "adcp_backup.Product", "adcp_backup.ExternalAgent", "adcp_backup.ProductEmbedding"]


@dataclass
class Measure:
    label: str
    seconds: float
    peak_rss_mb: float
    size_mb: float | None = None


def run(label: str, args: list[str], env: dict[str, str], cwd: Path, output: Path | None = None) -> Measure:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{label} failed:\n{stderr}")
    size = output.stat().st_size / 1e6 if output is not None and output.exists() else None
    return Measure(label, seconds, usage.ru_maxrss / 1024, size)


def newest(folder: Path) -> Path:
    return max(folder.glob("adcp-backup-*"), key=lambda p: p.stat().st_mtime_ns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=1, help="Multiply the data size (10 for the memory check).")
    parser.add_argument("--skip-django", action="store_true", help="Leave out dumpdata and loaddata.")
    parser.add_argument("--markdown", action="store_true", help="Print a Markdown table.")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch folder.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="adcp-bench-"))
    db = work / "bench.sqlite3"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "PYTHONPATH": str(ROOT),
           "DATABASE_URL": f"sqlite:///{db}", "ADCP_BACKUP_DIR": str(work / "backups"),
           "ADCP_BACKUP_LOG_FILE": str(work / "ops.log"), "ADCP_BACKUP_LOG_LEVEL": "WARNING"}
    tenants, products, embeddings = 1000 * args.scale, 100_000 * args.scale, 10_000 * args.scale
    try:
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], env=env, cwd=work, check=True)
        seed = run("seed", ["adcp_demo", "--tenants", str(tenants), "--products", str(products), "--embeddings",
                            str(embeddings), "--dim", "384"], env, work)
        print(f"seeded {tenants:,} tenants, {products:,} products, {embeddings:,} embeddings in {seed.seconds:.1f} s",
              file=sys.stderr)
        backups = work / "backups"
        results: list[Measure] = []
        results.append(run("backup_create --compress (gzip)", ["backup_create", "--compress", "-v0"], env, work))
        results[-1].size_mb = newest(backups).stat().st_size / 1e6
        gz = newest(backups)
        results.append(run("backup_create --compression zstd", ["backup_create", "--compression", "zstd", "-v0"],
                           env, work))
        results[-1].size_mb = newest(backups).stat().st_size / 1e6
        results.append(run("backup_validate (gzip file)", ["backup_validate", str(gz), "-v0"], env, work))
        results.append(run("backup_restore (gzip file, validation included)",
                           ["backup_restore", str(gz), "--force", "--no-safety-backup", "-v0"], env, work))
        results.append(run("backup_restore --dry-run (gzip file)", ["backup_restore", str(gz), "--dry-run", "-v0"],
                           env, work))

        if not args.skip_django:
            dump = work / "dump.json"
            results.append(run("dumpdata (json)", ["dumpdata", *MODELS, "--output", str(dump)], env, work, dump))
            with sqlite3.connect(db) as conn:
                for table in ("product_embeddings", "externalagent", "product", "tenant"):
                    conn.execute(f"DELETE FROM {table}")
            results.append(run("loaddata (json, into emptied tables)", ["loaddata", str(dump)], env, work))

        rows = [(m.label, f"{m.seconds:.2f}", f"{m.peak_rss_mb:.0f}", f"{m.size_mb:.1f}" if m.size_mb else "")
                for m in results]
        if args.markdown:
            print("| command | wall time (s) | peak RSS (MiB) | file size (MB) |")
            print("|---|---:|---:|---:|")
            for row in rows:
                print("| " + " | ".join(row) + " |")
        else:
            for row in rows:
                print(f"{row[0]:<50} {row[1]:>8} s {row[2]:>6} MiB {row[3]:>8}")
        by = {m.label.split()[0] + (" zstd" if "zstd" in m.label else "") + (" dry" if "dry" in m.label else ""): m
              for m in results}
        print(f"\ndry run / restore: {by['backup_restore dry'].seconds / by['backup_restore'].seconds:.2f}x "
              "(target <= 2)")
        if "dumpdata" in by and "loaddata" in by:
            print(f"\nbackup --compress / dumpdata: {by['backup_create'].seconds / by['dumpdata'].seconds:.2f}x "
                  f"(target <= 0.45x)")
            print(f"restore / loaddata: {by['backup_restore'].seconds / by['loaddata'].seconds:.2f}x (target <= 0.15x)")
    finally:
        if args.keep:
            print(f"scratch folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: a restore drill of a backup against a real restore of the same backup, in time and memory.

    python benchmarks/drill.py                                # SQLite in a temporary folder
    python benchmarks/drill.py --database-url postgres://postgres@127.0.0.1:5432/adcp_bench

Seeds the benchmark database (1,000 tenants, 100,000 products, 10,000 embeddings of dimension 384 by default)
with adcp_backup.demo and writes one full backup. Then, each in a process of its own so that its peak memory
is its own: `backup_restore --force --no-safety-backup` (the real restore, over the live data) and
`backup_drill` (a scratch database, the same restore pipeline, the read-back and the comparison, the removal).
Each is run --repeat times and the best kept; the peak resident memory is the kernel's figure for the process.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _environment(database_url: str, workdir: Path) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["ADCP_BACKUP_DIR"] = str(workdir / "backups")
    os.environ["ADCP_BACKUP_DRILL_DIR"] = str(workdir / "scratch")
    os.environ["ADCP_BACKUP_SETTINGS_FILES"] = ",".join(
        str(workdir / "data" / name) for name in ("app_settings.json", "tenant_settings.json"))
    os.environ["ADCP_BACKUP_LOG_FILE"] = str(workdir / "backup_operations.log")
    os.environ["ADCP_BACKUP_LOG_LEVEL"] = "WARNING"
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    os.environ["PYTHONPATH"] = str(ROOT)
    # One key for this process, which writes the backup, and the commands it runs in another folder (without it
    # each would make its own data/.secret_key, and the restores would refuse the backup as unsigned).
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))


def _command(*args: str, workdir: Path) -> tuple[dict[str, Any], float, int]:
    """Run one manage.py command; its JSON, its wall time and its peak resident memory (bytes)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), *args, "--json", "-v0"], cwd=workdir,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({process.returncode}): {stderr.decode()[-2000:]}")
    return json.loads(stdout), elapsed, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="Database to seed (default: SQLite in --workdir).")
    parser.add_argument("--workdir", help="Folder for the database, backups and scratch (default: a temporary one).")
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--embeddings", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--compression", choices=["none", "gzip", "zstd"], default="gzip")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each step; the best is kept.")
    parser.add_argument("--postgresql-scratch", choices=["database", "schema"], default="database",
                        help="ADCP_BACKUP_DRILL_POSTGRESQL_SCRATCH for the drills.")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="adcp-bench-drill-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    _environment(args.database_url or f"sqlite:///{workdir / 'bench.sqlite3'}", workdir)
    os.environ["ADCP_BACKUP_DRILL_POSTGRESQL_SCRATCH"] = args.postgresql_scratch
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connections

    from adcp_backup import demo, services

    size = demo.DemoSize(tenants=args.tenants, products=args.products, agents=5, embeddings=args.embeddings,
                         dim=args.dim)
    print(f"workdir {workdir}; engine {connections['default'].vendor}; {size}", flush=True)
    demo.write_settings_files(overwrite=True)
    demo.seed(size=size, reset=True)
    backup = services.backup_create(compression=args.compression)
    connections.close_all()
    print(f"backup {backup.name}: {backup.size / 1e6:.1f} MB, {backup.counts}", flush=True)

    restores: list[tuple[float, float, int]] = []
    drills: list[tuple[float, float, float, int, int]] = []
    for _ in range(max(1, args.repeat)):
        data, wall, peak = _command("backup_restore", backup.name, "--force", "--no-safety-backup",
                                    workdir=workdir)
        restores.append((data["duration"], wall, peak))
        print(f"restore: {data['duration']:.2f} s in the service, {wall:.2f} s process, peak {peak / 2**20:.0f} MB",
              flush=True)
        data, wall, peak = _command("backup_drill", backup.name, workdir=workdir)
        assert data["restorable"], data["problems"]
        drills.append((data["duration"], data["restore_seconds"], wall, peak, data["verify_seconds"],
                       data["scratch_seconds"]))
        print(f"drill:   {data['duration']:.2f} s in the service (restore {data['restore_seconds']:.2f} s, "
              f"verify {data['verify_seconds']:.2f} s, scratch database {data['scratch_seconds']:.2f} s), "
              f"{wall:.2f} s process, peak {peak / 2**20:.0f} MB", flush=True)
    restore = min(restores)
    drill = min(drills)
    print(f"\nbest restore {restore[0]:.2f} s; best drill {drill[0]:.2f} s "
          f"({drill[0] / restore[0]:.2f}x the restore); drill peak {min(d[3] for d in drills) / 2**20:.0f} MB, "
          f"restore peak {min(r[2] for r in restores) / 2**20:.0f} MB")
    print("\n| step | seconds (service) | seconds (process) | peak RSS |\n|---|---|---|---|")
    print(f"| backup_restore --force --no-safety-backup | {restore[0]:.2f} | {restore[1]:.2f} | "
          f"{restore[2] / 2**20:.0f} MB |")
    print(f"| backup_drill: restore into the scratch database | {drill[1]:.2f} | | |")
    print(f"| backup_drill: read back and compare | {drill[4]:.2f} | | |")
    print(f"| backup_drill: find leftovers, create and remove the scratch database | {drill[5]:.2f} | | |")
    print(f"| backup_drill (whole) | {drill[0]:.2f} | {drill[2]:.2f} | {drill[3] / 2**20:.0f} MB |")


if __name__ == "__main__":
    main()

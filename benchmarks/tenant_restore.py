"""Benchmark: restoring one tenant against reading the backup once and against a full restore.

    python benchmarks/tenant_restore.py                       # SQLite in a temporary folder
    python benchmarks/tenant_restore.py --database-url postgres://postgres@127.0.0.1:5432/adcp_bench

Seeds the benchmark database (1,000 tenants, 100,000 products, 10,000 embeddings of dimension 384 by
default) with adcp_backup.demo, writes one full backup, then times: one plain pass over the file's reader,
backup_validate, restoring one tenant from the full backup, restoring the same tenant from its own tenant
backup (the cost of writing that tenant's rows), and a full restore. Prints the figures and a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _setup(database_url: str, workdir: Path) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["ADCP_BACKUP_DIR"] = str(workdir / "backups")
    os.environ["ADCP_BACKUP_SETTINGS_FILES"] = ",".join(
        str(workdir / "data" / name) for name in ("app_settings.json", "tenant_settings.json"))
    os.environ["ADCP_BACKUP_LOG_FILE"] = str(workdir / "backup_operations.log")
    os.environ["ADCP_BACKUP_LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _timed(label: str, call: Callable[[], Any], results: list[tuple[str, float]], *, repeat: int = 1,
           prepare: Callable[[], Any] | None = None) -> Any:
    """The best of ``repeat`` runs (the machine is shared: the minimum is the least disturbed figure)."""
    best = float("inf")
    value = None
    for _ in range(repeat):
        if prepare is not None:
            prepare()
        started = time.perf_counter()
        value = call()
        best = min(best, time.perf_counter() - started)
    results.append((label, best))
    print(f"{label:<62} {best:8.2f} s", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="Database to seed and restore into (default: SQLite in --workdir).")
    parser.add_argument("--workdir", help="Folder for the database, backups and settings (default: a temporary one).")
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--embeddings", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--compression", choices=["none", "gzip", "zstd"], default="gzip")
    parser.add_argument("--tenant", default=None, help="Slug of the tenant to restore (default: the middle one).")
    parser.add_argument("--repeat", type=int, default=5, help="Runs of each timed step; the best is kept.")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="adcp-bench-tenant-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    _setup(args.database_url or f"sqlite:///{workdir / 'bench.sqlite3'}", workdir)

    from django.db import connections

    from adcp_backup import demo, services
    from adcp_backup.reading import open_backup
    from adcp_backup.storage import open_path

    slug = args.tenant or f"publisher-{args.tenants // 2}"
    size = demo.DemoSize(tenants=args.tenants, products=args.products, agents=5, embeddings=args.embeddings,
                         dim=args.dim)
    results: list[tuple[str, float]] = []
    print(f"workdir {workdir}; engine {connections['default'].vendor}; {size}", flush=True)
    demo.write_settings_files(overwrite=True)
    _timed("seed the benchmark database", lambda: demo.seed(size=size, reset=True), results)
    full = _timed("full backup", lambda: services.backup_create(compression=args.compression), results)
    print(f"  {full.name}: {full.size / 1e6:.1f} MB, {full.counts}")

    def plain_pass() -> int:
        events = 0
        with open_path(full.path) as handle, open_backup(handle, strict=True) as reader:
            for _ in reader.events():
                events += 1
        return events

    repeat = max(1, args.repeat)
    read = _timed("read the file once (plain pass over the reader)", plain_pass, results, repeat=repeat)
    _timed("backup_validate (read + checks + key index)", lambda: services.backup_validate(file=full.name), results,
           repeat=repeat)

    def damage() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT id FROM tenant WHERE slug = %s", [slug])
            tenant_id = cursor.fetchone()[0]
            cursor.execute("DELETE FROM product_embeddings WHERE product_id IN "
                           "(SELECT id FROM product WHERE tenant_id = %s)", [tenant_id])
            cursor.execute("DELETE FROM product WHERE tenant_id = %s", [tenant_id])

    one = _timed(f"restore one tenant ({slug}) from the full backup",
                 lambda: services.backup_restore(file=full.name, tenants=[slug], safety_backup=False), results,
                 repeat=repeat, prepare=damage)
    print(f"  rows written: {one.restored}")
    single = _timed(f"tenant backup of {slug}",
                    lambda: services.backup_create(tenants=[slug], compression=args.compression), results)
    _timed(f"restore {slug} from its tenant backup (writing its rows)",
           lambda: services.backup_restore(file=single.name, safety_backup=False), results, repeat=repeat,
           prepare=damage)
    _timed("full restore", lambda: services.backup_restore(file=full.name, safety_backup=False), results,
           repeat=repeat)

    seconds = dict(results)
    read_once = seconds["read the file once (plain pass over the reader)"]
    write_rows = seconds[f"restore {slug} from its tenant backup (writing its rows)"]
    one_tenant = seconds[f"restore one tenant ({slug}) from the full backup"]
    print(f"one read + writing the tenant's rows: {read_once + write_rows:.2f} s; restoring the tenant from the "
          f"full backup: {one_tenant:.2f} s ({one_tenant / (read_once + write_rows):.0%} of it); "
          f"full restore: {seconds['full restore']:.2f} s; {read} reader events")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MB")
    print("\n| step | seconds |\n|---|---|")
    for label, elapsed in results:
        print(f"| {label} | {elapsed:.2f} |")


if __name__ == "__main__":
    main()

"""Benchmark: how long a command takes to start, and what it imports on the way (python -X importtime).

    .venv/bin/python benchmarks/startup.py [--repeat 10] [--command backup_list --json]

Runs `manage.py COMMAND` (default `backup_list --json`, which touches neither the admin nor Celery) against an
empty SQLite database in a scratch folder, --repeat times, beside `python -c pass` and `django.setup()` alone,
and prints the best wall time of each. Bytecode is written on the first run (PYTHONDONTWRITEBYTECODE is
cleared), as on an installed site. Then one run under `-X importtime`: the slowest top-level imports, and
whether Celery, the admin's views or the MariaDB driver were imported at all.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
NOT_NEEDED = ("celery", "kombu", "project.celery", "adcp_backup.admin_views", "adcp_backup.jobs", "adcp_backup.tasks",
              "adcp_backup.drill", "pymysql", "psycopg")


def best_of(command: list[str], env: dict[str, str], cwd: Path, repeat: int) -> float:
    subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True)  # writes the bytecode
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--command", nargs="+", default=["backup_list", "--json"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="adcp-bench-startup-"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update({"DATABASE_URL": f"sqlite:///{work / 'adcp.sqlite3'}", "DJANGO_SETTINGS_MODULE": "project.settings",
                "PYTHONPATH": str(PROJECT), "ADCP_BACKUP_DIR": str(work / "backups"),
                "ADCP_BACKUP_LOG_FILE": str(work / "backup_operations.log")})
    manage = [sys.executable, str(PROJECT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, cwd=work, check=True, capture_output=True)

    rows = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("django.setup() of the project", [sys.executable, "-c", "import django; django.setup()"]),
        (f"manage.py {' '.join(args.command)}", [*manage, *args.command]),
    ]
    for label, command in rows:
        print(f"{label:<40} {best_of(command, env, work, args.repeat):6.3f} s (best of {args.repeat})", flush=True)

    done = subprocess.run([sys.executable, "-X", "importtime", *manage[1:], *args.command], env=env, cwd=work,
                          check=True, capture_output=True, text=True)
    top: list[tuple[int, str]] = []
    imported: set[str] = set()
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = line.split("|")
        imported.add(name.strip())
        if name.startswith(" ") and not name.startswith("  "):
            top.append((int(cumulative), name.strip()))
    print("\nslowest top-level imports (cumulative):")
    for micro, name in sorted(top, reverse=True)[:12]:
        print(f"  {micro / 1000:7.1f} ms  {name}")
    present = [name for name in NOT_NEEDED if name in imported]
    print(f"\nimported but not needed: {', '.join(present) if present else 'none'}")


if __name__ == "__main__":
    main()

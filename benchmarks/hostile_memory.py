"""Peak memory and time of validating hostile native files: problem floods and one huge line, each in its own process.

    python benchmarks/hostile_memory.py [--empty-lines 100000000] [--garbage-lines 10000000] [--line-mib 256]
                                        [--workdir DIR] [--keep]

Three gzip files, each with a valid header and a trailer whose checksum matches:
- a flood of empty lines (100 million by default: about 100 KB of gzip);
- a flood of lines that are not JSON ("x", 10 million by default);
- one table row of ``--line-mib`` MiB (256 by default), which the default line limit (64 MiB) refuses.
``manage.py backup_validate FILE`` runs on each in a child process; its peak RSS comes from the kernel
(``ru_maxrss`` of wait4). Every run must exit 2 (invalid) with peak RSS under 150 MiB.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MIB = 150
MIB = 1 << 20

HEADER = {"kind": "header", "format": "adcp-backup", "version": 3, "created_at": "2026-01-01T00:00:00+00:00",
          "tool": "hostile benchmark", "scope": {"tenants": "all"}, "purpose": "manual", "counts": {}}


def _line(record: dict[str, object]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def write_gzip(path: Path, body: Iterator[bytes], records: list[bytes]) -> int:
    """A native file: header, ``body`` (lines the reader does not hash), the records, a matching trailer."""
    file_hash = hashlib.sha256()
    header = _line(HEADER)
    file_hash.update(header)
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(header)
        for chunk in body:
            out.write(chunk)
        for record in records:
            file_hash.update(record)
            out.write(record)
        out.write(_line({"kind": "trailer", "counts": {}, "sha256": file_hash.hexdigest()}))
    return path.stat().st_size


def repeated(piece: bytes, count: int, per_chunk: int = 1 << 20) -> Iterator[bytes]:
    block = piece * per_chunk
    full, rest = divmod(count, per_chunk)
    for _ in range(full):
        yield block
    if rest:
        yield piece * rest


def huge_row(mib: int) -> Iterator[bytes]:
    """A table start, then one row whose text value is ``mib`` MiB long (the line never ends in time)."""
    columns = [{"name": "id", "family": "integer", "nullable": False},
               {"name": "name", "family": "text", "nullable": False}]
    yield _line({"kind": "table", "name": "tenant", "columns": columns})
    yield b'[1,"'
    yield from repeated(b"a", mib * MIB)
    yield b'"]\n'


def run(args: list[str], env: dict[str, str]) -> tuple[int, float, int, str]:
    """Exit code, wall seconds, peak RSS (KiB) and the first two lines of stdout of one child process."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdout is not None
    output = child.stdout.read().decode(errors="replace")
    _pid, status, usage = os.wait4(child.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code, time.monotonic() - started, usage.ru_maxrss, " / ".join(output.splitlines()[:2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--empty-lines", type=int, default=100_000_000)
    parser.add_argument("--garbage-lines", type=int, default=10_000_000)
    parser.add_argument("--line-mib", type=int, default=256)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work" / "hostile")
    parser.add_argument("--keep", action="store_true", help="Keep the generated files.")
    options = parser.parse_args()

    work = options.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    files = {
        f"{options.empty_lines:,} empty lines": (work / "empty-lines.jsonl.gz",
                                                 repeated(b"\n", options.empty_lines)),
        f"{options.garbage_lines:,} lines of garbage": (work / "garbage-lines.jsonl.gz",
                                                        repeated(b"x\n", options.garbage_lines)),
        f"one {options.line_mib} MiB line": (work / "huge-line.jsonl.gz", huge_row(options.line_mib)),
    }
    for label, (path, body) in files.items():
        started = time.monotonic()
        size = write_gzip(path, body, [])
        print(f"{label}: {size:,} bytes of gzip, written in {time.monotonic() - started:.1f} s")

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings",
           "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}", "ADCP_BACKUP_DIR": str(work / "backups"),
           "ADCP_BACKUP_SETTINGS_FILES": ",".join(str(work / "data" / name)
                                                  for name in ("app_settings.json", "tenant_settings.json")),
           "ADCP_BACKUP_LOG_FILE": str(work / "backup_operations.log"), "STATIC_ROOT": str(work / "static")}
    failures = 0
    for label, (path, _body) in files.items():
        code, wall, rss_kib, output = run(["backup_validate", str(path), "-v0"], env)
        ok = code == 2 and rss_kib / 1024 < LIMIT_MIB
        failures += not ok
        print(f"backup_validate, {label:<28} exit {code}  wall {wall:6.1f} s  peak RSS {rss_kib / 1024:6.1f} MiB"
              f"{'' if ok else '  <-- FAILED'}\n    {output}")
    if not options.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

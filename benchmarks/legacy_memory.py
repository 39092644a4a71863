"""Peak memory and time of validating and restoring a large legacy v2.0 file, each in its own process.

    python benchmarks/legacy_memory.py [--products 100000] [--embeddings 10000] [--dim 768] [--workdir DIR]

The file is written the way the legacy code wrote it (json.dumps with indent=2 and ensure_ascii=False over
the whole document), except that the lists are produced lazily so that generating it stays small too.
Then ``manage.py backup_validate`` and ``manage.py backup_restore --create-schema`` run in child processes
against a new SQLite database; each child's peak RSS comes from the kernel (``ru_maxrss`` of wait4).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class LazyList(list):  # type: ignore[type-arg]
    """A list the JSON encoder iterates without it ever being held in memory."""

    def __init__(self, length: int, item: Callable[[int], Any]) -> None:
        super().__init__()
        self._length = length
        self._item = item

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Any]:
        return (self._item(i) for i in range(self._length))


def legacy_document(products: int, embeddings: int, dim: int, tenants: int = 100, agents: int = 5) -> dict[str, Any]:
    rng = random.Random(20250902)
    vectors = [list(struct.unpack(f"<{dim}f", struct.pack(f"<{dim}f", *(rng.gauss(0, 1) for _ in range(dim)))))
               for _ in range(64)]

    def stamp(i: int) -> str:
        return f"2025-08-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}.{(i * 7919) % 1_000_000:06d}"

    def tenant(i: int) -> dict[str, Any]:
        n = i + 1
        return {"id": n, "name": f"Publisher {n} — «média»", "slug": f"publisher-{n}",
                "custom_prompt": f"You sell ads for publisher {n}.\nQuote \"prices\" in €." if n % 3 else None,
                "web_grounding_prompt": None, "enable_web_context": n % 2 == 0, "created_at": stamp(n)}

    per_tenant = -(-products // tenants)

    def product(i: int) -> dict[str, Any]:
        n = i + 1
        return {"id": n, "tenant_id": i // per_tenant + 1, "name": f"Homepage takeover #{n} 東京",
                "description": None if n % 7 == 0 else f"Product {n}: \"premium\" inventory,\nback\\slash and café.",
                "price_cpm": rng.random() * 50, "delivery_type": "guaranteed" if n % 3 else "non_guaranteed",
                "formats_json": json.dumps([{"type": "display", "size": "300x250"}]),
                "targeting_json": None if n % 5 == 0 else json.dumps({"geo": ["FR", "日本"]}, ensure_ascii=False),
                "created_at": stamp(n)}

    def agent(i: int) -> dict[str, Any]:
        n = i + 1
        return {"id": n, "name": f"Agent {n}", "base_url": f"https://agent{n}.example.com/mcp", "enabled": True,
                "agent_type": "signals", "protocol": "mcp", "created_at": stamp(n)}

    def embedding(i: int) -> dict[str, Any]:
        n = i + 1
        return {"id": n, "product_id": n, "embedding_text": f"Homepage takeover #{n}", "embedding_hash": f"{n:064x}",
                "embedding": vectors[i % len(vectors)], "provider": "gemini", "model": "text-embedding-004",
                "dim": dim, "updated_at": f"2025-08-30T{n % 24:02d}:00:00.000001", "is_stale": n % 3 == 0,
                "created_at": f"2025-08-30 {n % 24:02d}:00:00"}

    return {
        "backup_metadata": {
            "created_at": "2025-09-02T17:46:46.629000", "version": "2.0", "backup_type": "comprehensive",
            "system_info": {"hostname": "bench", "platform": "posix", "python_version": "3.10.12",
                            "backup_tool_version": "2.0"},
            "data_counts": {"tenants": tenants, "products": products, "external_agents": agents,
                            "embeddings": embeddings},
        },
        "tenants": LazyList(tenants, tenant),
        "products": LazyList(products, product),
        "external_agents": LazyList(agents, agent),
        "product_embeddings": LazyList(embeddings, embedding),
        "app_settings": {"environment_variables": {"GEMINI_API_KEY": "AIza-bench", "EMBEDDINGS_PROVIDER": "gemini"},
                         "file_settings": {"environment_variables": {}, "file_settings": {"rag_top_k": 8},
                                           "export_timestamp": "2025-09-01T00:00:00"},
                         "export_timestamp": "2025-09-02T17:46:46.700000"},
        "tenant_settings": {"tenant_prompts": {}, "tenant_configurations": {},
                            "export_timestamp": "2025-09-02T17:46:46.710000"},
        "database_schema": {"tables": {}, "indexes": {}, "foreign_keys": {}},
        "fts_tables": {"products_fts": {"exists": True}},
        "environment_config": {"database_url": "sqlite:///data/adcp.db"},
        "feature_flags": {"web_context_enabled": False, "debug_mode": False, "skip_reference_validation": False},
    }


def write_file(path: Path, products: int, embeddings: int, dim: int) -> None:
    encoder = json.JSONEncoder(indent=2, ensure_ascii=False)
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as out:
        for chunk in encoder.iterencode(legacy_document(products, embeddings, dim)):
            out.write(chunk)


def run(args: list[str], env: dict[str, str]) -> tuple[int, float, int]:
    """Exit code, wall seconds and peak RSS (KiB) of one child process."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    if child.returncode != 0:
        sys.stderr.write(child.stderr.read().decode(errors="replace") if child.stderr else "")
    return child.returncode, wall, usage.ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--embeddings", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work" / "legacy")
    parser.add_argument("--keep", action="store_true", help="Keep the generated file and database.")
    options = parser.parse_args()

    work = options.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    legacy_file = work / "comprehensive_backup_20250902_174646.json"
    started = time.monotonic()
    write_file(legacy_file, options.products, options.embeddings, options.dim)
    size = legacy_file.stat().st_size
    print(f"legacy v2.0 file: {size / 1e6:.0f} MB ({size:,} bytes), {options.products:,} products, "
          f"{options.embeddings:,} embeddings of dim {options.dim}; written in {time.monotonic() - started:.1f} s")

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings",
           "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}", "ADCP_BACKUP_DIR": str(work / "backups"),
           "ADCP_BACKUP_SETTINGS_FILES": ",".join(str(work / "data" / name)
                                                  for name in ("app_settings.json", "tenant_settings.json")),
           "ADCP_BACKUP_LOG_FILE": str(work / "backup_operations.log"), "STATIC_ROOT": str(work / "static")}
    results = []
    for label, args in (("backup_validate", ["backup_validate", str(legacy_file), "-v0"]),
                        ("backup_restore", ["backup_restore", str(legacy_file), "--force", "--create-schema",
                                            "--no-safety-backup", "-v0"])):
        code, wall, rss_kib = run(args, env)
        results.append((label, code, wall, rss_kib))
        print(f"{label:<16} exit {code}  wall {wall:6.1f} s  peak RSS {rss_kib / 1024:6.1f} MiB")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"largest child peak RSS (RUSAGE_CHILDREN): {children / 1024:.1f} MiB")
    if not options.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(code == 0 for _label, code, _wall, _rss in results) else 1


if __name__ == "__main__":
    sys.exit(main())

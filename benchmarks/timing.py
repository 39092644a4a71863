"""The timing harness of the engine benchmarks (postgresql.py, mysql.py): the data size, a scratch folder with the
demo project's environment, and each command measured in a wrapper process whose only child it is, so that
getrusage(RUSAGE_CHILDREN).ru_maxrss is that command's own peak.

    .venv/bin/python benchmarks/timing.py COMMAND...   # wrapper mode: one command, its wall time and peak RSS as JSON
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
TABLES = ["tenant", "product", "externalagent", "product_embeddings"]
SIZE = {"tenants": 1000, "products": 100_000, "agents": 10, "embeddings": 10_000, "dim": 384}
GZIP, ZSTD = "backup_create --compress (gzip level 1)", "backup_create --compression zstd"
RESTORE_GZIP, RESTORE_ZSTD = "backup_restore (gzip)", "backup_restore (zstd)"


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


def arguments(description: str, server: str) -> argparse.Namespace:
    """--server (default ``server``), --database, --repeat and --scale, shared by the engine benchmarks."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--server", default=server)
    parser.add_argument("--database", default="adcp_bench")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each command (the median is reported).")
    parser.add_argument("--scale", type=float, default=1, help="Multiplies the tenants, products and embeddings.")
    return parser.parse_args()


@dataclass
class Bench:
    """A scratch folder and the project's environment on ``url``; the commands measured so far, by label."""

    url: str
    repeat: int
    work: Path
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def create(cls, url: str, repeat: int, prefix: str) -> Bench:
        return cls(url, repeat, Path(tempfile.mkdtemp(prefix=prefix)))

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": self.url, "DJANGO_SETTINGS_MODULE": "project.settings",
                "ADCP_BACKUP_DIR": str(self.work / "backups"),
                "ADCP_BACKUP_SETTINGS_FILES": str(self.work / "app_settings.json"),
                "ADCP_BACKUP_LOG_FILE": str(self.work / "backup_operations.log")}

    @property
    def manage(self) -> list[str]:
        return [sys.executable, str(PROJECT / "manage.py")]

    def seed(self, scale: float) -> None:
        size = scaled(SIZE, scale)
        print(f"Seeding {self.url}: {size}", flush=True)
        subprocess.run([*self.manage, "adcp_demo", *[f"--{k}={v}" for k, v in size.items()]], env=self.env,
                       cwd=self.work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def measure(self, command: list[str]) -> dict[str, float]:
        out = subprocess.run([sys.executable, __file__, *command], env=self.env, cwd=self.work,
                             stdout=subprocess.PIPE, check=True)
        numbers: dict[str, float] = json.loads(out.stdout)
        return numbers

    def run(self, label: str, command: list[str], output: Path | None = None, *, keep_output: bool = False) -> None:
        """The median wall time of ``repeat`` runs (this machine is shared), the largest peak RSS of them, and the
        size of ``output`` (removed before each run unless ``keep_output``)."""
        runs = []
        for _ in range(self.repeat):
            if output is not None and output.exists() and not keep_output:
                output.unlink()
            runs.append(self.measure(command))
        walls = sorted(r["wall"] for r in runs)
        numbers: dict[str, Any] = {"wall": walls[len(walls) // 2], "peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}
        if output is not None:
            numbers["size_mib"] = output.stat().st_size / 2**20
        self.results[label] = numbers
        print(f"{label:<42} {numbers['wall']:6.2f} s  {numbers['peak_rss_mib']:6.1f} MiB"
              + (f"  {numbers['size_mib']:7.1f} MiB" if "size_mib" in numbers else ""), flush=True)

    def run_adcp_backup(self) -> tuple[Path, Path]:
        """backup_create with gzip and with zstd, then backup_restore of each; the two files."""
        gz, zst = self.work / "backup.jsonl.gz", self.work / "backup.jsonl.zst"
        self.run(GZIP, [*self.manage, "backup_create", "--compress", "--no-settings", "--output", str(gz)], gz)
        self.run(ZSTD, [*self.manage, "backup_create", "--compression", "zstd", "--no-settings", "--output", str(zst)],
                 zst)
        return gz, zst

    def run_adcp_restore(self, gz: Path, zst: Path) -> None:
        self.run(RESTORE_GZIP, [*self.manage, "backup_restore", str(gz), "--force", "--no-safety-backup"])
        self.run(RESTORE_ZSTD, [*self.manage, "backup_restore", str(zst), "--force", "--no-safety-backup"])

    def wall(self, label: str) -> float:
        return float(self.results[label]["wall"])

    def summary(self, dump: tuple[str, str], restore: tuple[str, str], restore_target: float) -> None:
        """Print adcp-backup's best backup and restore times against the engine's tools ((name, label) of each
        measured command), and its peak RSS."""
        backup_wall = min(self.wall(GZIP), self.wall(ZSTD))
        restore_wall = min(self.wall(RESTORE_GZIP), self.wall(RESTORE_ZSTD))
        peak = max(n["peak_rss_mib"] for label, n in self.results.items() if label.startswith("backup_"))
        print(f"\n{'backup / ' + dump[0] + ':':<27}{backup_wall / self.wall(dump[1]):.2f}x (target <= 1)")
        print(f"{'restore / ' + restore[0] + ':':<27}{restore_wall / self.wall(restore[1]):.2f}x "
              f"(target <= {restore_target:g})")
        print(f"{'peak RSS of adcp-backup:':<27}{peak:.1f} MiB (target < 150)")


if __name__ == "__main__":
    measure_child(sys.argv[1:])

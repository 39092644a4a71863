"""Fixtures and helpers of the scheduling, retention and locking tests: small real backups with chosen creation
times, manage.py and Celery processes of the project in a folder of their own, a Redis broker."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from adcp_backup import __version__, signing
from adcp_backup.format.writer import BackupWriter

TENANT_COLUMNS = [
    {"name": "id", "family": "integer", "nullable": False},
    {"name": "name", "family": "text", "nullable": False},
    {"name": "slug", "family": "text", "nullable": False},
    {"name": "custom_prompt", "family": "text", "nullable": True},
    {"name": "web_grounding_prompt", "family": "text", "nullable": True},
    {"name": "enable_web_context", "family": "boolean", "nullable": False},
    {"name": "created_at", "family": "datetime", "nullable": False},
]


def write_backup(folder: Path, created_at: datetime, *, purpose: str = "manual", name: str | None = None,
                 truncated: bool = False, source: dict[str, Any] | None = None, signed: bool = True) -> str:
    """A native v3 backup of one tenant row, named so that its name says nothing true about its time.

    ``signed``: signed with this installation's key, as backup_create signs (else as if written elsewhere)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"adcp-backup-{secrets.token_hex(6)}.jsonl"
    with open(folder / name, "wb") as out:
        writer = BackupWriter(out)
        header = {
            "created_at": created_at.isoformat(),
            "tool": f"adcp-backup {__version__}",
            "source": source if source is not None else {"engine": "sqlite", "alias": "default"},
            "scope": {"tenants": "all"},
            "purpose": purpose,
            "counts": {"tenant": 1},
            "compression": "none",
            "secrets": "redacted",
            "schema": {"engine": "sqlite", "tables": {"tenant": TENANT_COLUMNS}},
        }
        if signed:
            header["signature"] = signing.header_signature(BackupWriter.header_record(header), name)
        writer.header(header)
        writer.begin_table("tenant", TENANT_COLUMNS)
        writer.rows([[1, "Acme", "acme", None, None, False, "2024-01-01 00:00:00"]])
        writer.end_table()
        if not truncated:
            writer.trailer(sign=signing.trailer_signature if signed else None)
    return name


REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def project_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a manage.py or Celery process of the project, in its own folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADCP_", "DJANGO_", "CELERY_", "DATABASE_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": f"sqlite:///{workdir / 'adcp.sqlite3'}",
        "ADCP_BACKUP_DIR": str(workdir / "backups"),
        "ADCP_BACKUP_SETTINGS_FILES": ",".join(str(workdir / "data" / name)
                                               for name in ("app_settings.json", "tenant_settings.json")),
        "ADCP_BACKUP_LOG_FILE": str(workdir / "backup_operations.log"),
        "ADCP_BACKUP_LOG_LEVEL": "WARNING",
        "DJANGO_SECRET_KEY": os.environ["DJANGO_SECRET_KEY"],  # the tests' key: backups they sign verify there
    })
    env.update(extra)
    return env


def manage(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, str(REPO / "manage.py"), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def start_manage(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([PYTHON, str(REPO / "manage.py"), *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


REDIS_DB = int(os.environ.get("ADCP_TEST_REDIS_DB", "4"))


def broker_url() -> str:
    """This suite's own Redis database on the server CELERY_BROKER_URL names (127.0.0.1:6379 by default)."""
    base = urlsplit(os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/0")
    return f"redis://{base.netloc}/{REDIS_DB}"


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    redis = pytest.importorskip("redis")
    url = broker_url()
    # Celery prefers CELERY_BROKER_URL to the broker an app is given: this process talks to ``url`` only.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis server at {url}")
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


class Processes:
    """Celery processes of one test, stopped with SIGTERM (a warm shutdown) at its end."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, *args: str) -> Path:
        log = self.workdir / f"{args[0]}.log"
        process = subprocess.Popen([PYTHON, "-m", "celery", "-A", "project", *args, "-l", "INFO"], env=self.env,
                                   cwd=self.workdir, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        self.running.append((process, log))
        return log

    def worker(self) -> Path:
        return self.start("worker", "--pool=solo", "--without-mingle", "--without-gossip", "--without-heartbeat",
                          "-n", f"adcp-test-{os.getpid()}@%h")

    def beat(self) -> Path:
        return self.start("beat", "-s", str(self.workdir / "beat-schedule"))

    def stop(self) -> None:
        for process, _log in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _log in self.running:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def celery_processes(tmp_path: Path) -> Iterator[Any]:
    made: list[Processes] = []

    def make(env: dict[str, str]) -> Processes:
        made.append(Processes(tmp_path, env))
        return made[-1]

    yield make
    for processes in made:
        processes.stop()


def wait_for(condition: Any, timeout: float, what: str, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs if log.exists())
    pytest.fail(f"timed out waiting for {what}\n{tails}")

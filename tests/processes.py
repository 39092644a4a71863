"""Child processes of the tests: manage.py of the demo project on this test run's databases, and signals sent to
it at a chosen point of its work."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connections

from adcp_backup import demo

ROOT = Path(__file__).resolve().parent.parent
# Enough rows that a child is still writing them when its signal arrives (several seconds of work).
BIG = demo.DemoSize(tenants=20, products=60_000, agents=2, embeddings=2_000, dim=64)


def database_url(alias: str) -> str:
    """A DATABASE_URL for another process, naming this test run's database of ``alias``."""
    settings_dict = connections.settings[alias]
    if connections[alias].vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    scheme = "postgres" if connections[alias].vendor == "postgresql" else "mysql"
    user = settings_dict.get("USER") or ""
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"{scheme}://{user}{password}@{host}{port}/{settings_dict['NAME']}"


def child_env(workdir: Path, alias: str = "default", **extra: str) -> dict[str, str]:
    """The environment of the project's manage.py on the test database of ``alias``, with the backup folder, settings
    files and operations log of ``workdir`` (backup_env's layout); ``extra`` adds or replaces variables."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url(alias),
        "ADCP_BACKUP_DIR": str(workdir / "backups"),
        "ADCP_BACKUP_SETTINGS_FILES": f"{workdir / 'data' / 'app_settings.json'},"
                                      f"{workdir / 'data' / 'tenant_settings.json'}",
        "ADCP_BACKUP_LOG_FILE": str(workdir / "operations.log"),
        **extra,
    }


def manage(args: list[str], cwd: Path, *, alias: str = "default", **extra: str) -> subprocess.Popen[str]:
    """manage.py in ``cwd`` on the test database of ``alias``, its progress (stderr) piped; ``extra`` adds
    variables."""
    connections[alias].close()  # SQLite: the child writes the same file; servers: no idle transaction of ours
    return subprocess.Popen([sys.executable, str(ROOT / "manage.py"), *args], cwd=cwd,
                            env=child_env(cwd, alias, **extra), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def signal_at_marker(proc: subprocess.Popen[str], marker: str, signum: int) -> str:
    """Send ``signum`` when ``marker`` appears on the progress output; the whole of stderr."""
    assert proc.stderr is not None
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if marker in line:
                proc.send_signal(signum)
                break
        else:
            pytest.fail(f"the process ended before {marker!r} (exit {proc.wait()}): {''.join(seen)}")
        rest = proc.stderr.read()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return "".join(seen) + rest


def kill_at_marker(proc: subprocess.Popen[str], marker: str) -> None:
    """SIGKILL when ``marker`` appears on the progress output; fails unless that signal ended the process."""
    stderr = signal_at_marker(proc, marker, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, stderr


def kill_when(proc: subprocess.Popen[str], reached: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """SIGKILL once ``reached()`` is true (polled); fails if the process ends first or ``what`` takes too long."""
    try:
        deadline = time.monotonic() + timeout
        while not reached():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, f"the process never reached {what}"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

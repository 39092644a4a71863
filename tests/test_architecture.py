"""Import directions, read from the source: every import statement of every module, those inside functions too.

- ``adcp_backup.format`` imports nothing from Django and no module of the app outside ``format`` (so neither
  ``conf`` nor ``models``): it reads and writes files, and the app hands it what it needs.
- No module imports the front ends ``adcp_backup.admin``, ``adcp_backup.management`` or ``adcp_backup.tasks``
  but their own modules: Django finds them by convention (the admin's autodiscovery, the command loader,
  Celery's task autodiscovery), so neither apps.py nor any URL configuration needs to import them either.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "adcp_backup"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
FORMAT = f"{PACKAGE}.format"
FRONT_ENDS = (f"{PACKAGE}.admin", f"{PACKAGE}.management", f"{PACKAGE}.tasks")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(source: str, module: str, *, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in ``source``, the module of ``module``. ``from X import
    y`` yields X and X.y, since y may be a submodule; relative imports are resolved against ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[:-(node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}"


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """What ``module`` (whose source is ``source``) imports against the rules above."""
    found = []
    for line, name in imported(source, module, is_package=is_package):
        if within(module, FORMAT):
            if within(name, "django") or (within(name, PACKAGE) and not within(name, FORMAT)):
                found.append(f"{module}:{line} imports {name}")
        for front_end in FRONT_ENDS:
            if within(name, front_end) and not within(module, front_end):
                found.append(f"{module}:{line} imports the front end {name}")
    return found


def modules() -> list[tuple[str, Path]]:
    return sorted((module_name(path), path) for path in ROOT.rglob("*.py"))


def test_the_import_directions_hold_in_every_module():
    found = [v for name, path in modules()
             for v in violations(path.read_text(encoding="utf-8"), name, is_package=path.name == "__init__.py")]
    assert found == []


def test_every_format_module_is_checked():
    names = [name for name, _ in modules()]
    assert f"{FORMAT}.detect" in names and f"{FORMAT}.crypto" in names and f"{FORMAT}.legacy" in names


@pytest.mark.parametrize(("module", "source"), [
    (f"{FORMAT}.reader", "def limits():\n    from ..conf import backup_settings\n    return backup_settings\n"),
    (f"{FORMAT}.values", "from .. import dataset\n"),
    (f"{FORMAT}.crypto", "import django.conf\n"),
    (f"{FORMAT}.codecs", "from django.core.exceptions import ImproperlyConfigured\n"),
    (f"{FORMAT}.legacy", "from adcp_backup.models import Tenant\n"),
    (f"{FORMAT}", "from ..exceptions import BackupError\n"),
    (f"{PACKAGE}.services", "def f():\n    from .management.base import format_size\n"),
    (f"{PACKAGE}.jobs", "from . import tasks\n"),
    (f"{PACKAGE}.db.sqlite", "from ..admin import BackupFileAdmin\n"),
    (f"{PACKAGE}.format.reader", "import adcp_backup.tasks\n"),
])
def test_a_wrong_import_is_found(module, source):
    assert violations(source, module, is_package=module == FORMAT)


@pytest.mark.parametrize(("module", "source"), [
    (f"{FORMAT}.detect", "from . import codecs, crypto, legacy\nfrom .reader import NativeReader\n"),
    (f"{FORMAT}.crypto", "import threading\nimport orjson\nfrom .pipe import Channel\n"),
    (f"{PACKAGE}.management.commands.backup_list", "from ..base import BackupCommand\n"),
    (f"{PACKAGE}.admin", "from .admin_views import urls\nfrom django.contrib import admin\n"),
    (f"{PACKAGE}.services", "from .format.detect import open_reader\nfrom . import dataset\n"),
])
def test_an_allowed_import_passes(module, source):
    assert violations(source, module) == []


def test_the_format_package_loads_without_django():
    """The same rule seen from the running interpreter: importing every format module loads no Django."""
    names = [name for name, _ in modules() if within(name, FORMAT)]
    program = (f"import sys\nfor name in {names!r}:\n    __import__(name)\n"
               "loaded = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')\n"
               f"                or (m.startswith('{PACKAGE}.') and not m.startswith('{FORMAT}')))\n"
               "print(loaded)\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True,
                            cwd=ROOT.parent, env={"PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "[]"

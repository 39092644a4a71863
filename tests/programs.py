"""External programs some tests need (age, Chromium): found on PATH, else skipped, except under CI=true.

A fresh machine with Python and make has neither, and `make test` must pass there; CI installs both, so there a
missing program is a failure, never a silent skip.
"""
from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_program(*names: str) -> str:
    """The path of the first of ``names`` on PATH; skips the test without one (fails it under CI=true)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    message = f"needs the {names[0]!r} program on PATH"
    if in_ci():
        pytest.fail(f"{message}: CI installs it, so its absence is an error there.")
    pytest.skip(message)

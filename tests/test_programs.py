"""The rule for tests that need an external program: skipped where it is missing, failed under CI=true."""
from __future__ import annotations

import pytest

from .programs import require_program


def test_a_missing_program_skips_outside_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs the 'age' program"):
        require_program("age")


def test_a_missing_program_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI installs it"):
        require_program("chromium", "chromium-browser")


def test_a_present_program_is_found_by_its_path(monkeypatch, tmp_path):
    program = tmp_path / "chromium-browser"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert require_program("chromium", "chromium-browser") == str(program)

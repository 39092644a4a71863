"""Sizes are written one way, in binary units, by the commands and on the admin's pages alike."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.template import Context, Template

import adcp_backup
from adcp_backup.display import format_size


@pytest.mark.parametrize(("size", "shown"), [
    (None, "?"),
    (0, "0 bytes"),
    (1023, "1023 bytes"),
    (1024, "1.0 KiB"),
    (1536, "1.5 KiB"),
    (1024**2 - 1, "1.0 MiB"),
    (64 * 1024**2, "64.0 MiB"),
    (1_000_000_000, "953.7 MiB"),
    (5 * 1024**3 + 512 * 1024**2, "5.5 GiB"),
    (3 * 1024**4, "3.0 TiB"),
    (2048 * 1024**4, "2048.0 TiB"),
])
def test_sizes_are_written_in_binary_units(size: int | None, shown: str) -> None:
    assert format_size(size) == shown


def test_the_pages_write_sizes_with_the_same_formatter() -> None:
    template = Template("{% load adcp_backup_admin %}{{ known|size }} / {{ unknown|size }}")
    assert template.render(Context({"known": 1_000_000_000, "unknown": None})) == "953.7 MiB / ?"


def test_no_template_writes_sizes_in_decimal_units() -> None:
    templates = Path(adcp_backup.__file__).parent / "templates"
    pages = list(templates.rglob("*.html"))
    assert pages and [p.name for p in pages if "filesizeformat" in p.read_text(encoding="utf-8")] == []

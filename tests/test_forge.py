"""The forging helper reproduces the writer's checksums (and signature), so hostile files built with it are
refused for their content; unsigned forgeries are refused for that alone."""
from __future__ import annotations

from adcp_backup import services
from tests import forge


def test_a_resealed_copy_of_a_backup_validates(seeded, backup_env, tmp_path):
    seeded()
    original = services.backup_create(compression="gzip")
    copy = forge.forge(original.path, tmp_path / "copy.jsonl", lambda lines: lines)
    report = services.backup_validate(file=str(copy))
    assert report.valid, report.problems
    assert report.counts == original.counts

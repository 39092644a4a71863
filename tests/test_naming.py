"""Backup names and the times they carry: the shape of a new name, and which creation times are believed."""
from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from adcp_backup import naming, signing

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(("compression", "extension"), [("none", ".jsonl"), ("gzip", ".jsonl.gz"),
                                                         ("zstd", ".jsonl.zst")])
def test_a_new_name_sorts_by_time_and_ends_with_a_random_part(compression, extension):
    name = naming.new_backup_name(compression, now=NOW)
    assert re.fullmatch(rf"adcp-backup-20260102-030405-[0-9a-f]{{8}}{re.escape(extension)}", name), name
    assert naming.new_backup_name(compression, now=NOW) != name


@pytest.fixture
def local_time_far_from_utc(monkeypatch):
    """The process's local time zone set to UTC-10 for one test (time.tzset reads TZ)."""
    monkeypatch.setenv("TZ", "Pacific/Honolulu")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_without_a_time_the_name_carries_now_in_utc_whatever_the_local_time_zone(local_time_far_from_utc):
    before = datetime.now(UTC).replace(microsecond=0)
    name = naming.new_backup_name("none")
    after = datetime.now(UTC)
    stamp = datetime.strptime(name[len("adcp-backup-"):][:15], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    assert before <= stamp <= after


def test_an_encrypted_backups_name_carries_its_signature(settings):
    settings.ADCP_BACKUP_SIGNING_KEY = "naming-test-key"
    name = naming.new_backup_name("gzip", now=NOW, suffix=".age")
    assert re.fullmatch(r"adcp-backup-20260102-030405-[0-9a-f]{8}-[0-9a-f]{16}\.jsonl\.gz\.age", name), name
    provenance, created = signing.verify_name(name)
    assert (provenance.status, created) == (signing.SIGNED, NOW)
    # another suffix is not signed
    assert re.fullmatch(r"adcp-backup-20260102-030405-[0-9a-f]{8}\.jsonl\.zst\.x",
                        naming.new_backup_name("zstd", now=NOW, suffix=".x"))


@pytest.mark.parametrize(("value", "parsed"), [
    ("2026-01-02T03:04:05+00:00", NOW),
    ("2026-01-02T05:04:05+02:00", NOW),
    ("2026-01-02T03:04:05", NOW),  # naive: taken as UTC
    ("2026-01-02 03:04:05.250000", NOW + timedelta(microseconds=250000)),
    ("", None), (None, None), ("yesterday", None), ("2026-13-02T00:00:00", None),
])
def test_parse_time(value, parsed):
    result = naming.parse_time(value)
    assert result == parsed
    if result is not None:
        assert result.tzinfo is not None


def test_a_naive_time_keeps_its_clock_reading_as_utc():
    assert naming.parse_time("2026-01-02T03:04:05") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert naming.parse_time("2026-01-02T03:04:05+02:00").utcoffset() == timedelta(hours=2)
    assert naming.parse_time("2026-01-02T03:04:05+02:00") == datetime(2026, 1, 2, 3, 4, 5,
                                                                       tzinfo=timezone(timedelta(hours=2)))


def test_a_creation_time_is_in_the_future_only_past_the_tolerance(settings):
    settings.ADCP_BACKUP_FUTURE_TOLERANCE = 300
    assert naming.is_future(NOW + timedelta(seconds=300), now=NOW) is False
    assert naming.is_future(NOW + timedelta(seconds=300, microseconds=1), now=NOW) is True
    assert naming.is_future(NOW - timedelta(days=1), now=NOW) is False
    assert naming.is_future(None, now=NOW) is False
    settings.ADCP_BACKUP_FUTURE_TOLERANCE = 0
    assert naming.is_future(NOW + timedelta(microseconds=1), now=NOW) is True
    assert naming.is_future(datetime.now(UTC) + timedelta(seconds=5)) is True
    assert naming.is_future(datetime.now(UTC) - timedelta(seconds=5)) is False

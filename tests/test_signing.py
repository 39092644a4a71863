"""Provenance: backups this installation writes are signed, and only they steer latest, monitoring and retention."""
from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from adcp_backup import services, signing
from adcp_backup.exceptions import UnsignedBackup

from . import forge
from .helpers import run_command, table_state
from .legacy_fixtures import v2_document, write_v2
from .scheduling_fixtures import write_backup


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def rewrite_trailer(path: Path, change) -> None:
    lines = path.read_bytes().splitlines()
    trailer = orjson.loads(lines[-1])
    change(trailer)
    lines[-1] = orjson.dumps(trailer)
    path.write_bytes(b"\n".join(lines) + b"\n")


# -- what a backup carries -------------------------------------------------------------------------------
def test_a_new_backup_is_signed_and_every_front_end_says_so(seeded):
    seeded()
    result = services.backup_create(compression="none")
    lines = Path(result.path).read_bytes().splitlines()
    header, trailer = orjson.loads(lines[0]), orjson.loads(lines[-1])
    assert header["signature"]["alg"] == trailer["signature"]["alg"] == "hmac-sha256"
    assert signing.verify_header(header, result.name).status == signing.SIGNED
    assert signing.verify_trailer(trailer).status == signing.SIGNED
    assert result.provenance == "signed"

    [entry] = services.backup_list()
    assert (entry.provenance, entry.trusted, entry.uploaded, entry.future_dated) == ("signed", True, False, False)
    report = services.backup_validate(file=result.name)
    assert report.valid and report.provenance == "signed" and report.trusted

    code, out, _ = run_command("backup_list", "--json")
    assert json.loads(out)["backups"][0]["provenance"] == "signed" and json.loads(out)["backups"][0]["trusted"]
    code, out, _ = run_command("backup_list")
    assert "signed here" in out.splitlines()[1]
    code, out, _ = run_command("backup_validate", result.name, "--json")
    assert json.loads(out)["provenance"] == "signed"
    code, out, _ = run_command("backup_validate", result.name)
    assert "provenance: signed here" in out


def test_a_wrong_trailer_mac_makes_a_file_unsigned_and_its_restore_is_refused(seeded, backup_env):
    seeded()
    result = services.backup_create(compression="none")
    target = backup_env / "tampered.jsonl"
    shutil.copy(result.path, target)
    rewrite_trailer(target, lambda t: t["signature"].update(mac="0" * 64))

    report = services.backup_validate(file=str(target))
    assert report.valid  # intact: the checksums hold
    assert report.provenance == "unsigned" and "does not match" in report.provenance_note and not report.trusted

    state = table_state()
    code, out, err = run_command("backup_restore", str(target), "--force", "--no-safety-backup")
    assert code == 1 and "--allow-unsigned" in err and "not signed by this installation" in err
    assert table_state() == state
    with pytest.raises(UnsignedBackup):
        services.backup_restore(file=str(target), safety_backup=False)
    assert table_state() == state
    # A dry run goes ahead (it changes nothing) and says why the file would need the flag.
    dry = services.backup_restore(file=str(target), dry_run=True)
    assert any("unsigned" in note for note in dry.notes)
    assert table_state() == state


def test_allow_unsigned_restores_a_file_from_elsewhere(seeded, backup_env, settings):
    seeded()
    before = table_state()
    result = services.backup_create(compression="gzip")
    settings.SECRET_KEY = "another-installation-with-a-key-of-its-own-0123456789"
    assert services.backup_validate(file=result.name).provenance == "unsigned"
    code, _, err = run_command("backup_restore", result.name, "--force", "--no-safety-backup")
    assert code == 1 and "--allow-unsigned" in err
    code, out, _ = run_command("backup_restore", result.name, "--force", "--no-safety-backup", "--allow-unsigned",
                               "--json")
    assert code == 0, out
    assert any("unsigned" in n for n in json.loads(out)["notes"])
    assert table_state() == before


def test_a_rotated_key_in_secret_key_fallbacks_still_verifies_old_backups(seeded, settings):
    seeded()
    old_key = settings.SECRET_KEY
    result = services.backup_create(compression="zstd")
    settings.SECRET_KEY = "the-new-secret-key-after-rotation-0123456789abcdef"
    assert services.backup_list()[0].provenance == "unsigned"
    settings.SECRET_KEY_FALLBACKS = [old_key]
    [entry] = services.backup_list()
    assert entry.provenance == "signed-old-key" and entry.trusted
    report = services.backup_validate(file=result.name)
    assert report.provenance == "signed-old-key" and report.trusted
    assert services.backup_restore(file="latest", safety_backup=False).name == result.name
    # New backups are signed with the new key.
    newer = services.backup_create(compression="none")
    assert services.backup_validate(file=newer.name).provenance == "signed"


def test_an_explicit_signing_key_and_its_fallbacks(seeded, settings):
    seeded()
    settings.ADCP_BACKUP_SIGNING_KEY = "a-dedicated-backup-signing-key-0123456789abcdef"
    result = services.backup_create(compression="none")
    settings.SECRET_KEY = "changing-secret-key-changes-nothing-for-an-explicit-key-0123"
    assert services.backup_validate(file=result.name).provenance == "signed"
    settings.ADCP_BACKUP_SIGNING_KEY = "its-successor-signing-key-0123456789abcdefghijkl"
    assert services.backup_validate(file=result.name).provenance == "unsigned"
    settings.ADCP_BACKUP_SIGNING_KEY_FALLBACKS = ["a-dedicated-backup-signing-key-0123456789abcdef"]
    assert services.backup_validate(file=result.name).provenance == "signed-old-key"


def test_a_genuine_header_copied_under_another_name_is_not_signed_for_it(seeded, backup_env):
    seeded()
    result = services.backup_create(compression="none")
    copy = backup_env / "backups" / "adcp-backup-20990101-000000-deadbeef.jsonl"
    shutil.copy(result.path, copy)
    entries = {e.name: e for e in services.backup_list()}
    assert entries[result.name].trusted
    assert entries[copy.name].provenance == "unsigned" and not entries[copy.name].trusted
    # Its content is this installation's, though: validation (the trailer) and restore accept it.
    assert services.backup_validate(file=copy.name).provenance == "signed"


# -- forged and dropped files ----------------------------------------------------------------------------
@pytest.fixture
def forged_world(seeded, backup_env):
    """Real backups three to ten days old, and fourteen tiny valid forgeries dated 2099 dropped beside them."""
    seeded()
    folder = backup_env / "backups"
    now = datetime.now(UTC)
    real = [write_backup(folder, now - timedelta(days=d)) for d in range(3, 11)]
    forged = [write_backup(folder, datetime(2099, 1, 1, tzinfo=UTC) + timedelta(hours=h), signed=False)
              for h in range(12)]
    forged.append(write_backup(folder, datetime(2099, 6, 1, tzinfo=UTC), signed=False,
                               name="adcp-upload-20990601-000000-0badf00d.jsonl"))
    # One signed with the key but dated in the future (a wrong clock, or a leaked key): flagged, never steering.
    forged.append(write_backup(folder, now + timedelta(days=1)))
    return folder, real, forged


def test_forged_future_dated_files_steer_nothing(forged_world):
    folder, real, forged = forged_world
    newest_real = real[0]
    assert services._latest_name() == newest_real
    assert services.backup_restore_plan(file="latest").name == newest_real

    code, out, err = run_command("backup_info", "--max-age", "26h", "--json")
    info = json.loads(out)
    assert code == 1 and info["stale"] and info["newest"]["name"] == newest_real
    assert sorted(u["name"] for u in info["backups"]["untrusted"]) == sorted(forged)
    code, out, err = run_command("backup_info", "--max-age", "26h")
    assert code == 1 and "ignored (not this installation's own backup: dated in the future)" in out

    entries = {e.name: e for e in services.backup_list()}
    assert entries[forged[-1]].future_dated and entries[forged[-1]].provenance == "signed"
    assert entries["adcp-upload-20990601-000000-0badf00d.jsonl"].uploaded
    code, out, _ = run_command("backup_list")
    assert "(FUTURE)" in out and "uploaded, unsigned" in out


def test_the_default_prune_keeps_real_backups_and_never_deletes_forgeries(forged_world, settings):
    folder, real, forged = forged_world
    before = folder_files(folder)
    settings.ADCP_BACKUP_KEEP_LAST = 3
    settings.ADCP_BACKUP_KEEP_DAILY = 0
    settings.ADCP_BACKUP_KEEP_WEEKLY = 0
    settings.ADCP_BACKUP_KEEP_MONTHLY = 0
    result = services.backup_prune()
    assert {p.name for p in result.removed} == set(real[3:])  # only real backups, by the real rule
    assert {p.name for p in result.kept} == set(real[:3])
    assert set(forged) <= {p.name for p in result.skipped}
    after = folder_files(folder)
    assert set(after) == set(before) - set(real[3:])
    assert all(after[name] == before[name] for name in after)  # what stays is untouched


def test_prune_protects_the_newest_signed_valid_backup_not_a_forgery(seeded, backup_env):
    seeded()
    folder = backup_env / "backups"
    now = datetime.now(UTC)
    real = write_backup(folder, now - timedelta(days=40))
    write_backup(folder, now - timedelta(hours=1), signed=False)
    result = services.backup_prune(keep_last=0, keep_daily=1, keep_weekly=0, keep_monthly=0)
    assert [p.name for p in result.kept] == [real]


def test_forged_but_unsigned_files_are_refused_without_allow_unsigned(seeded, backup_env):
    seeded()
    original = services.backup_create(compression="none")
    state = table_state()
    unsigned = forge.forge(original.path, backup_env / "unsigned.jsonl", lambda lines: lines, sign=False)
    code, _, err = run_command("backup_restore", str(unsigned), "--force", "--no-safety-backup")
    assert code == 1 and "carries no signature" in err
    assert table_state() == state
    resigned = forge.forge(original.path, backup_env / "resigned.jsonl", lambda lines: lines)
    assert services.backup_validate(file=str(resigned)).provenance == "signed"


def test_a_forged_invalid_and_unsigned_file_is_still_reported_invalid(seeded, backup_env):
    seeded()
    state = table_state()
    bad = backup_env / "bad.jsonl"
    bad.write_text('{"kind":"header","format":"adcp-backup","version":3}\n[1]\n')
    code, out, _ = run_command("backup_restore", str(bad), "--force", "--json")
    assert code == 2 and json.loads(out)["problems"]
    assert table_state() == state


def test_legacy_files_need_allow_unsigned_and_say_why(seeded, backup_env):
    seeded()
    legacy = write_v2(backup_env / "legacy_backup.json.gz", v2_document())
    state = table_state()
    code, _, err = run_command("backup_restore", str(legacy), "--force", "--no-safety-backup")
    assert code == 1 and "legacy backup code signed nothing" in err and "--allow-unsigned" in err
    assert table_state() == state
    report = services.backup_validate(file=str(legacy))
    assert report.provenance == "unsigned" and "legacy" in report.provenance_note
    code, _, err = run_command("backup_restore", str(legacy), "--force", "--no-safety-backup", "--allow-unsigned")
    assert code == 0, err


# -- encrypted backups on a host that holds only public keys ---------------------------------------------
def test_encrypted_backups_are_recognised_by_their_signed_name_without_the_identity(seeded, backup_env, settings):
    pyrage = pytest.importorskip("pyrage")
    identity = pyrage.x25519.Identity.generate()
    settings.ADCP_BACKUP_AGE_RECIPIENTS = [str(identity.to_public())]
    settings.ADCP_BACKUP_AGE_IDENTITY = ""
    seeded()
    result = services.backup_create(encrypt=True)
    folder = backup_env / "backups"
    renamed = folder / re.sub(r"-[0-9a-f]{16}(\.jsonl)", r"-0123456789abcdef\1", result.name)
    assert renamed.name != result.name
    shutil.copy(folder / result.name, renamed)
    entries = {e.name: e for e in services.backup_list()}
    assert entries[result.name].provenance == "signed" and entries[result.name].trusted
    assert entries[renamed.name].provenance == "unsigned" and not entries[renamed.name].trusted
    info = services.backup_info(max_age=timedelta(hours=1))
    assert info.newest is not None and info.newest["name"] == result.name and not info.stale


def test_forged_files_dropped_into_the_bucket_steer_nothing_and_survive_prune(seeded, s3, backup_env):
    seeded()
    real = [services.backup_create(compression="gzip").name for _ in range(3)]
    local = backup_env / "forgeries"
    forged = [write_backup(local, datetime(2099, 1, 1, tzinfo=UTC) + timedelta(hours=h), signed=False)
              for h in range(5)]
    forged.append(write_backup(local, datetime.now(UTC) + timedelta(days=2)))  # signed, but dated ahead
    for name in forged:
        s3.client.put_object(Bucket=s3.name, Key=f"{s3.prefix}/{name}", Body=(local / name).read_bytes())

    assert services._latest_name() == real[-1]
    info = services.backup_info(max_age=timedelta(hours=1))
    assert info.newest is not None and info.newest["name"] == real[-1] and not info.stale
    assert sorted(u["name"] for u in info.backups["untrusted"]) == sorted(forged)
    result = services.backup_prune(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert {p.name for p in result.removed} == set(real[:-1])
    assert sorted(s3.keys()) == sorted(f"{s3.prefix}/{n}" for n in [real[-1], *forged])


def test_a_header_nested_too_deep_to_sign_is_listed_as_unsigned(seeded, backup_env):
    seeded()
    folder = backup_env / "backups"
    name = write_backup(folder, datetime.now(UTC) - timedelta(days=1), signed=False)
    lines = (folder / name).read_bytes().split(b"\n")
    lines[0] = lines[0][:-1] + b',"x":' + b"[" * 600 + b"]" * 600 + b"}"
    (folder / name).write_bytes(b"\n".join(lines))
    [entry] = services.backup_list()
    assert entry.provenance == "unsigned" and not entry.trusted and "cannot be signed" in entry.provenance_note

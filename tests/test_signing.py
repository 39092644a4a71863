"""Provenance: backups this installation writes are signed, and only they steer latest, monitoring and retention."""
from __future__ import annotations

import hashlib
import hmac
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


# -- the signing rules, function by function ---------------------------------------------------------------
# A MAC is HMAC-SHA256 keyed by a key derived from a secret, over a context that says what is signed, then the
# signed bytes. Composing it here, from the documented parts, pins the format: backups already written must
# keep verifying.
def derived(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"adcp-backup signing key v1", hashlib.sha256).digest()


def mac(secret: str, context: bytes, payload: bytes) -> str:
    return hmac.new(derived(secret), context + payload, hashlib.sha256).hexdigest()


HEADER = {"kind": "header", "format": "adcp-backup", "version": 3, "created_at": "2026-01-02T03:04:05+00:00",
          "source": {"engine": "sqlite", "alias": "default"}, "scope": "all", "secrets": "redacted"}
TRAILER = {"kind": "trailer", "counts": {"tenant": 2, "product": 5}, "sha256": "ab" * 32}


@pytest.fixture
def keyed(settings):
    settings.ADCP_BACKUP_SIGNING_KEY = "current-signing-key"
    settings.ADCP_BACKUP_SIGNING_KEY_FALLBACKS = []
    return settings


def test_the_header_mac_covers_the_name_and_every_field_but_the_signature(keyed):
    payload = b"backup.jsonl\x00" + orjson.dumps(HEADER, option=orjson.OPT_SORT_KEYS)
    expected = {"alg": "hmac-sha256", "mac": mac("current-signing-key", b"adcp-backup header v3\x00", payload)}
    assert signing.header_signature(HEADER, "backup.jsonl") == expected
    assert signing.header_signature({**HEADER, "signature": {"alg": "x", "mac": "y"}}, "backup.jsonl") == expected


def test_the_trailer_mac_covers_the_checksum_and_the_counts(keyed):
    payload = b"ab" * 32 + b"\x00" + orjson.dumps(TRAILER["counts"], option=orjson.OPT_SORT_KEYS)
    assert signing.trailer_signature(TRAILER["sha256"], TRAILER["counts"]) == {
        "alg": "hmac-sha256", "mac": mac("current-signing-key", b"adcp-backup trailer v3\x00", payload)}


def signed_header(name: str = "backup.jsonl") -> dict:
    return {**HEADER, "signature": signing.header_signature(HEADER, name)}


def signed_trailer() -> dict:
    return {**TRAILER, "signature": signing.trailer_signature(TRAILER["sha256"], TRAILER["counts"])}


MISMATCH = ("does not match this installation's keys: written by another installation, or changed")


def test_a_header_verifies_only_for_its_name_and_unchanged(keyed):
    assert signing.verify_header(signed_header(), "backup.jsonl") == signing.Provenance(signing.SIGNED, "")
    unsigned = signing.Provenance(signing.UNSIGNED, f"its header signature {MISMATCH}")
    assert signing.verify_header(signed_header(), "other.jsonl") == unsigned
    for field, value in [("created_at", "2026-01-02T03:04:06+00:00"), ("scope", ["t1"]), ("secrets", "included"),
                         ("source", {"engine": "sqlite", "alias": "other"}), ("extra", 1)]:
        assert signing.verify_header({**signed_header(), field: value}, "backup.jsonl") == unsigned, field
    short = signed_header()
    del short["scope"]
    assert signing.verify_header(short, "backup.jsonl") == unsigned


def test_a_trailer_verifies_only_unchanged(keyed):
    assert signing.verify_trailer(signed_trailer()) == signing.Provenance(signing.SIGNED, "")
    unsigned = signing.Provenance(signing.UNSIGNED, f"its trailer signature {MISMATCH}")
    assert signing.verify_trailer({**signed_trailer(), "sha256": "cd" * 32}) == unsigned
    assert signing.verify_trailer({**signed_trailer(), "counts": {"tenant": 2, "product": 6}}) == unsigned
    assert signing.verify_trailer({**signed_trailer(), "counts": None}) == unsigned
    no_checksum = {**TRAILER, "sha256": None, "signature": signing.trailer_signature("", TRAILER["counts"])}
    assert signing.verify_trailer(no_checksum) == signing.Provenance(signing.SIGNED, "")


@pytest.mark.parametrize(("signature", "note"), [
    (None, "its {what} carries no signature: written elsewhere or by an older version"),
    ("hmac-sha256:abc", "its {what} signature is malformed"),
    ({"alg": "hmac-sha256"}, "its {what} signature is malformed"),
    ({"alg": "hmac-sha256", "mac": 7}, "its {what} signature is malformed"),
    ({"alg": "hmac-sha512", "mac": "MAC"}, "its {what} signature is malformed"),
    ({"mac": "MAC"}, "its {what} signature is malformed"),
])
def test_a_missing_or_malformed_signature_is_unsigned_and_says_which(keyed, signature, note):
    good_header, good_trailer = signed_header(), signed_trailer()
    for what, good, verify in (("header", good_header, lambda d: signing.verify_header(d, "backup.jsonl")),
                               ("trailer", good_trailer, signing.verify_trailer)):
        if isinstance(signature, dict) and signature.get("mac") == "MAC":
            signature = {**signature, "mac": good["signature"]["mac"]}  # the right MAC under a wrong algorithm
        changed = {**good, "signature": signature}
        if signature is None:
            del changed["signature"]
        assert verify(changed) == signing.Provenance(signing.UNSIGNED, note.format(what=what))


def test_a_header_or_trailer_no_tool_writes_cannot_be_signed():
    deep: list = []
    for _ in range(300):
        deep = [deep]
    assert signing.verify_header({**HEADER, "scope": deep}, "b.jsonl") == signing.Provenance(
        signing.UNSIGNED, "its header cannot be signed: it is not one this tool writes")
    assert signing.verify_trailer({**TRAILER, "counts": deep}) == signing.Provenance(
        signing.UNSIGNED, "its trailer cannot be signed: it is not one this tool writes")


def test_keys_are_the_current_one_then_each_fallback_once(settings):
    settings.ADCP_BACKUP_SIGNING_KEY = "current"
    settings.ADCP_BACKUP_SIGNING_KEY_FALLBACKS = "old1, ,old2,current,old1"
    settings.SECRET_KEY_FALLBACKS = ["ignored with an explicit key"]
    assert signing.keys() == [derived("current"), derived("old1"), derived("old2")]
    settings.ADCP_BACKUP_SIGNING_KEY_FALLBACKS = ["old2", "", "old1"]
    assert signing.keys() == [derived("current"), derived("old2"), derived("old1")]
    settings.ADCP_BACKUP_SIGNING_KEY_FALLBACKS = None
    assert signing.keys() == [derived("current")]


def test_without_a_signing_key_the_keys_come_from_secret_key_and_both_fallback_lists(settings):
    settings.ADCP_BACKUP_SIGNING_KEY = ""
    settings.SECRET_KEY = "django-secret"
    settings.ADCP_BACKUP_SIGNING_KEY_FALLBACKS = ["backup-old"]
    settings.SECRET_KEY_FALLBACKS = ["django-old", "", "django-secret"]
    assert signing.keys() == [derived("django-secret"), derived("backup-old"), derived("django-old")]
    settings.SECRET_KEY_FALLBACKS = "django-old, ,other"  # Django's list, or one comma-separated string
    assert signing.keys() == [derived("django-secret"), derived("backup-old"), derived("django-old"), derived("other")]
    settings.SECRET_KEY_FALLBACKS = b"django-old,other"
    assert signing.keys() == [derived("django-secret"), derived("backup-old"), derived("django-old"), derived("other")]
    settings.ADCP_BACKUP_SIGNING_KEY = None
    settings.ADCP_BACKUP_SIGNING_KEY_FALLBACKS = []
    del settings.SECRET_KEY_FALLBACKS
    assert signing.keys() == [derived("django-secret")]


def test_a_mac_of_an_old_key_is_signed_with_the_old_key(settings):
    settings.ADCP_BACKUP_SIGNING_KEY = "old"
    header, trailer = signed_header(), signed_trailer()
    settings.ADCP_BACKUP_SIGNING_KEY = "new"
    settings.ADCP_BACKUP_SIGNING_KEY_FALLBACKS = ["older", "old"]
    old = signing.Provenance(signing.SIGNED_OLD_KEY, "signed with a key this installation has since replaced")
    assert (signing.verify_header(header, "backup.jsonl"), signing.verify_trailer(trailer)) == (old, old)
    settings.ADCP_BACKUP_SIGNING_KEY_FALLBACKS = []
    assert signing.verify_trailer(trailer).status == signing.UNSIGNED


def test_each_provenance_says_whether_it_is_trusted_and_how_it_is_shown():
    shown = {status: (signing.Provenance(status).trusted, signing.Provenance(status).label)
             for status in (signing.SIGNED, signing.SIGNED_OLD_KEY, signing.UNSIGNED, signing.UNVERIFIED, "odd")}
    assert shown == {"signed": (True, "signed here"), "signed-old-key": (True, "signed here (old key)"),
                     "unsigned": (False, "unsigned"), "unverified": (False, "unverified (encrypted)"),
                     "odd": (False, "odd")}
    assert signing.legacy() == signing.Provenance(signing.UNSIGNED,
                                                  "a legacy-format file: the legacy backup code signed nothing")


NAME_SIGNED = signing.Provenance(signing.SIGNED, "encrypted: its name's signature was checked; its content's is "
                                                 "checked where an age identity opens it")


@pytest.mark.parametrize("suffix", [".jsonl.age", ".jsonl.gz.age", ".jsonl.zst.age"])
def test_an_encrypted_files_name_carries_a_mac_of_its_stem_and_suffix(keyed, suffix):
    stem = "adcp-backup-20260102-030405-0a1b2c3d"
    name = signing.signed_name(stem, suffix)
    name_mac = mac("current-signing-key", b"adcp-backup name v1\x00", (stem + suffix).encode())[:16]
    assert name == f"{stem}-{name_mac}{suffix}"
    assert signing.verify_name(name) == (NAME_SIGNED, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))


def test_a_changed_or_foreign_name_proves_nothing(keyed, settings):
    stem, suffix = "adcp-backup-20260102-030405-0a1b2c3d", ".jsonl.gz.age"
    name = signing.signed_name(stem, suffix)
    the_mac = name[len(stem) + 1:-len(suffix)]
    mismatch = (signing.Provenance(signing.UNSIGNED, "encrypted, and its name's signature does not match this "
                                                     "installation's keys"), None)
    unverified = (signing.Provenance(signing.UNVERIFIED, "encrypted, and no age identity here opens it: its "
                                                         "signature cannot be checked"), None)
    assert signing.verify_name(name.replace("20260102-030405", "20260102-030406")) == mismatch  # time
    assert signing.verify_name(name.replace("0a1b2c3d", "0a1b2c3e")) == mismatch  # random part
    assert signing.verify_name(name.replace(".gz.age", ".zst.age")) == mismatch  # suffix
    assert signing.verify_name(name.replace(the_mac, "0" * 16)) == mismatch
    for odd in (name.upper(), name.replace(the_mac, the_mac[:15]), name + ".partial", "x" + name,
                name.replace(".age", ""), stem + suffix, name.replace(the_mac, the_mac + "0"),
                name.replace("-0a1b2c3d", "-0a1b2c3"), name.replace(the_mac, the_mac[:15] + "g"),
                name.replace("20260102-030405", "2026012-030405")):
        assert signing.verify_name(odd) == unverified, odd
    settings.ADCP_BACKUP_SIGNING_KEY = "next-key"
    assert signing.verify_name(name) == mismatch
    settings.ADCP_BACKUP_SIGNING_KEY_FALLBACKS = ["current-signing-key"]
    assert signing.verify_name(name) == (
        signing.Provenance(signing.SIGNED_OLD_KEY, NAME_SIGNED.note), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))

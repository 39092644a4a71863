"""age encryption: round trips, interoperability with the age CLI, and every key or file problem refused."""
from __future__ import annotations

import base64
import gzip
import io
import json
import os
import re
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyrage
import pytest
from django.db import connections

from adcp_backup import demo, services
from adcp_backup.exceptions import BackupConfigurationError, BackupError, EncryptionKeyError, InvalidBackup
from adcp_backup.format import crypto
from adcp_backup.format.codecs import AGE_MAGIC
from adcp_backup.format.detect import open_reader
from adcp_backup.format.events import RowBatch, TableStart
from adcp_backup.format.writer import BackupWriter
from adcp_backup.keys import load_identities, parse_recipients
from adcp_backup.settings_files import REDACTED

from .helpers import fts_match, run_command, table_state
from .programs import require_program

SECRET = "AIza-test-secret-value"  # set by the backup_env fixture as GEMINI_API_KEY
HEADER_END = b"\n---"
CIPHER_CHUNK = 64 * 1024 + 16  # an age payload chunk: 64 KiB of plaintext and its tag
# More than the 1 MiB a reader takes at a time: damage near the end is found after rows were inserted.
LARGER = demo.DemoSize(tenants=4, products=400, agents=2, embeddings=400, dim=1024)


def age_keygen(folder: Path, name: str) -> tuple[Path, str]:
    """A new key pair from pyrage, in an identity file laid out as age-keygen writes one (comments, then the key),
    so that no external program is needed: the identity file and its public key."""
    identity = pyrage.x25519.Identity.generate()
    public = str(identity.to_public())
    path = folder / f"{name}.txt"
    path.write_text(f"# created: 2026-11-29T00:00:00Z\n# public key: {public}\n{identity}\n", encoding="utf-8")
    path.chmod(0o600)
    return path, public


def age(*args: str) -> subprocess.CompletedProcess[bytes]:
    """The age command-line tool (skips the test where it is missing, except under CI)."""
    return subprocess.run([require_program("age"), *args], check=True, capture_output=True)


@pytest.fixture
def keys(tmp_path: Path, settings: Any) -> dict[str, Any]:
    """Two key pairs; backups are encrypted to the first, whose identity file is the configured one."""
    folder = tmp_path / "keys"
    folder.mkdir()
    identity, public = age_keygen(folder, "backup")
    other_identity, other_public = age_keygen(folder, "other")
    settings.ADCP_BACKUP_AGE_RECIPIENTS = [public]
    settings.ADCP_BACKUP_AGE_IDENTITY = ""
    return {"identity": identity, "public": public, "other_identity": other_identity, "other_public": other_public}


def modify_database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE product SET name = 'changed', price_cpm = 1 WHERE id <= 10")
        cursor.execute("DELETE FROM product_embeddings WHERE id > 6")


def age_decrypt(path: str | Path, identity: Path) -> bytes:
    """Decrypted by the age command-line tool: for the interoperability tests."""
    return age("-d", "-i", str(identity), str(path)).stdout


def decrypt(path: str | Path, identity: Path) -> bytes:
    """Decrypted in memory by pyrage, apart from the app's streaming layer: for small files' contents."""
    key = next(line for line in Path(identity).read_text().splitlines() if line.startswith("AGE-SECRET-KEY-1"))
    return pyrage.decrypt(Path(path).read_bytes(), [pyrage.x25519.Identity.from_str(key)])


def encrypt(plaintext: Path, target: Path, public: str) -> None:
    """Encrypted by pyrage's own streaming call, apart from the app's layer."""
    with open(plaintext, "rb") as source, open(target, "wb") as sink:
        pyrage.encrypt_io(source, sink, [pyrage.x25519.Recipient.from_str(public)])


def encrypted_zeros(folder: Path, mebibytes: int, public: str) -> Path:
    """``mebibytes`` MiB of zero bytes encrypted to ``public`` (apart from the app's layer), as ``zeros.age``."""
    plaintext = folder / "zeros.bin"
    with open(plaintext, "wb") as f:
        f.truncate(mebibytes << 20)
    encrypted = folder / "zeros.age"
    encrypt(plaintext, encrypted, public)
    plaintext.unlink()
    return encrypted


def backup_names() -> list[str]:
    return sorted(e.name for e in services.backup_list())


# -- round trips -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_encrypted_round_trip_restores_every_row(seeded, keys, compression):
    seeded()
    before = table_state()
    fts_before = fts_match("homepage")
    result = services.backup_create(compression=compression, encrypt=True)
    assert result.encrypted and result.secrets == "redacted"
    assert result.name.endswith({"none": ".jsonl", "gzip": ".jsonl.gz", "zstd": ".jsonl.zst"}[compression] + ".age")
    raw = Path(result.path).read_bytes()
    assert raw.startswith(AGE_MAGIC)
    assert b"publisher-1" not in raw and b'"kind"' not in raw  # nothing readable without the key

    modify_database()
    assert table_state() != before
    restored = services.backup_restore(file=result.name, identity=keys["identity"], safety_backup=False)
    assert restored.restored == result.counts
    assert table_state() == before
    assert fts_match("homepage") == fts_before
    with connections["default"].cursor() as cursor:
        cursor.execute("INSERT INTO products_fts(products_fts) VALUES('integrity-check')")


def test_encrypt_setting_encrypts_every_backup_and_the_safety_backup(seeded, keys, settings):
    seeded()
    settings.ADCP_BACKUP_ENCRYPT = True
    settings.ADCP_BACKUP_AGE_IDENTITY = str(keys["identity"])
    result = services.backup_create()
    assert result.encrypted and result.name.endswith(".age")
    modify_database()
    changed = table_state()
    restored = services.backup_restore(file=result.name)
    safety = Path(settings.ADCP_BACKUP_DIR) / restored.safety_backup
    assert restored.safety_backup.endswith(".age") and safety.read_bytes().startswith(AGE_MAGIC)
    services.backup_restore(file=restored.safety_backup, safety_backup=False)
    assert table_state() == changed


def test_include_secrets_keeps_them_inside_the_encryption_only(seeded, keys):
    seeded()
    result = services.backup_create(compression="gzip", encrypt=True, include_secrets=True)
    assert result.secrets == "included"
    assert SECRET.encode() not in Path(result.path).read_bytes()
    lines = [json.loads(line) for line in gzip.decompress(decrypt(result.path, keys["identity"])).splitlines()]
    assert lines[0]["secrets"] == "included"
    environment = next(line for line in lines if isinstance(line, dict) and line["kind"] == "environment")
    assert environment["variables"]["GEMINI_API_KEY"] == SECRET
    assert "hunter2" in environment["variables"]["SERVICE_BASE_URL"]
    assert environment["redacted"] == []
    # what a restore reports is masked even though the file holds the values
    restored = services.backup_restore(file=result.name, identity=keys["identity"], safety_backup=False)
    assert restored.environment["variables"]["GEMINI_API_KEY"] == REDACTED

    plain = services.backup_create(compression="gzip", encrypt=True)
    lines = [json.loads(line) for line in gzip.decompress(decrypt(plain.path, keys["identity"])).splitlines()]
    environment = next(line for line in lines if isinstance(line, dict) and line["kind"] == "environment")
    assert lines[0]["secrets"] == "redacted" and environment["variables"]["GEMINI_API_KEY"] == REDACTED


def test_include_secrets_without_encryption_is_refused_and_writes_nothing(seeded, keys):
    seeded()
    with pytest.raises(BackupError, match="needs encryption"):
        services.backup_create(include_secrets=True)
    code, _out, message = run_command("backup_create", "--include-secrets")
    assert code == 1 and "--encrypt" in message
    assert backup_names() == []
    code, out, _ = run_command("backup_create", "--encrypt", "--include-secrets", "--json")
    assert code == 0 and json.loads(out)["secrets"] == "included" and json.loads(out)["encrypted"] is True


# -- interoperability with the age command-line tool ---------------------------------------------------------
def test_age_cli_decrypts_a_native_encrypted_backup(seeded, keys, tmp_path):
    seeded()
    before = table_state()
    result = services.backup_create(compression="zstd", encrypt=True)
    decrypted = tmp_path / "decrypted.jsonl.zst"
    decrypted.write_bytes(age_decrypt(result.path, keys["identity"]))
    report = services.backup_validate(file=str(decrypted))
    assert report.valid and report.counts == result.counts and not report.encrypted
    modify_database()
    services.backup_restore(file=str(decrypted), safety_backup=False)
    assert table_state() == before


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armored"])
def test_a_file_encrypted_by_the_age_cli_restores(seeded, keys, tmp_path, armor):
    seeded()
    before = table_state()
    plain = services.backup_create(compression="gzip")
    encrypted = tmp_path / "by-cli.jsonl.gz.age"
    age(*(["-a"] if armor else []), "-r", keys["public"], "-o", str(encrypted), plain.path)
    modify_database()
    report = services.backup_validate(file=str(encrypted), identity=keys["identity"])
    assert report.valid and report.encrypted and report.compression == "gzip"
    services.backup_restore(file=str(encrypted), identity=keys["identity"], safety_backup=False)
    assert table_state() == before


# -- key and file problems -----------------------------------------------------------------------------------
@pytest.fixture
def encrypted_backup(seeded, keys) -> Callable[..., Path]:
    def make(compression: str = "none") -> Path:
        seeded(size=LARGER)  # several age chunks, so that damage can lie after rows that decrypt well
        return Path(services.backup_create(compression=compression, encrypt=True).path)

    return make


def assert_refused_unchanged(file: str, error: type[BaseException], match: str, *, rows_written: bool = False,
                             **kwargs: Any) -> None:
    """The restore raises ``error`` and the database holds what it held (``rows_written``: even though the
    failure came after rows had been inserted, so it was rolled back)."""
    modify_database()
    state = table_state()
    names = backup_names()
    events: list[Any] = []
    with pytest.raises(error, match=match):
        services.backup_restore(file=file, safety_backup=False, progress=events.append, **kwargs)
    assert table_state() == state
    assert any(e.phase == "restore" and e.done > 0 for e in events) == rows_written
    with pytest.raises(error, match=match):
        services.backup_restore(file=file, **kwargs)
    assert table_state() == state
    assert all(n in backup_names() for n in names)


def test_wrong_identity_is_refused_with_the_database_unchanged(encrypted_backup, keys):
    path = encrypted_backup()
    assert_refused_unchanged(path.name, EncryptionKeyError, "encrypted to other recipients",
                             identity=keys["other_identity"])
    code, _out, message = run_command("backup_restore", path.name, "--force", "--identity", str(keys["other_identity"]))
    assert code == 1 and "other recipients" in message
    code, _out, _message = run_command("backup_validate", path.name, "--identity", str(keys["other_identity"]))
    assert code == 1


def test_no_identity_is_a_configuration_error(encrypted_backup, keys):
    path = encrypted_backup()
    assert_refused_unchanged(path.name, EncryptionKeyError, "no identity is configured")
    code, _out, message = run_command("backup_validate", path.name)
    assert code == 1 and "--identity" in message
    code, out, _ = run_command("backup_validate", path.name, "--json")
    assert code == 1 and json.loads(out)["type"] == "EncryptionKeyError"
    code, _out, message = run_command("backup_restore", path.name, "--force")
    assert code == 1 and "ADCP_BACKUP_AGE_IDENTITY" in message


def test_a_flipped_byte_is_refused_with_the_database_unchanged(encrypted_backup, keys, tmp_path):
    path = encrypted_backup()
    data = bytearray(path.read_bytes())
    assert len(data) > (1 << 20) + 2 * CIPHER_CHUNK
    data[len(data) - CIPHER_CHUNK // 2] ^= 0x01  # in the last chunk: the rows before it decrypt and are inserted
    damaged = tmp_path / "flipped.jsonl.age"
    damaged.write_bytes(bytes(data))
    assert_refused_unchanged(str(damaged), InvalidBackup, "failed age's authentication", rows_written=True,
                             identity=keys["identity"])
    report = services.backup_validate(file=str(damaged), identity=keys["identity"])
    assert not report.valid and report.encrypted
    assert any(p.section == "encryption" and "altered" in p.message for p in report.problems)
    code, _out, _message = run_command("backup_validate", str(damaged), "--identity", str(keys["identity"]))
    assert code == 2
    code, _out, _message = run_command("backup_restore", str(damaged), "--force", "--identity", str(keys["identity"]))
    assert code == 2


def test_a_flipped_byte_in_the_age_header_is_refused(encrypted_backup, keys, tmp_path):
    path = encrypted_backup()
    data = bytearray(path.read_bytes())
    mac = data.index(HEADER_END) + 8  # inside the header's MAC
    data[mac] ^= 0x01
    damaged = tmp_path / "header.jsonl.age"
    damaged.write_bytes(bytes(data))
    assert_refused_unchanged(str(damaged), InvalidBackup, "age header is damaged", identity=keys["identity"])
    code, _out, _message = run_command("backup_validate", str(damaged), "--identity", str(keys["identity"]))
    assert code == 2


@pytest.mark.parametrize("cut", ["middle", "chunk boundary", "last byte"])
def test_a_truncated_encrypted_file_is_refused_with_the_database_unchanged(encrypted_backup, keys, tmp_path, cut):
    path = encrypted_backup()
    data = path.read_bytes()
    payload = data.index(HEADER_END) + len(HEADER_END)
    payload = data.index(b"\n", payload) + 1 + 16  # the header's MAC line, then the payload nonce
    length = {"middle": len(data) // 2, "chunk boundary": payload + 2 * CIPHER_CHUNK, "last byte": len(data) - 1}[cut]
    assert length < len(data)
    truncated = tmp_path / "truncated.jsonl.age"
    truncated.write_bytes(data[:length])
    assert_refused_unchanged(str(truncated), InvalidBackup, "truncated", rows_written=cut != "chunk boundary",
                             identity=keys["identity"])
    report = services.backup_validate(file=str(truncated), identity=keys["identity"])
    assert not report.valid and report.encrypted
    assert any("truncated" in p.message for p in report.problems)


def test_identity_file_problems_are_clear_and_never_show_the_path(encrypted_backup, keys, tmp_path):
    path = encrypted_backup()
    empty = tmp_path / "empty-identity.txt"
    empty.write_text("# created: today\n")
    broken = tmp_path / "broken-identity.txt"
    broken.write_text("AGE-SECRET-KEY-1NOTAKEYATALL\n")
    cases = [
        (tmp_path / "missing.txt", "does not exist"),
        (empty, "holds no AGE-SECRET-KEY-1"),
        (broken, "line 1 of the identity file given with --identity is not a valid age identity"),
        (tmp_path, "is a folder"),
    ]
    for identity, expected in cases:
        with pytest.raises(EncryptionKeyError, match=expected) as excinfo:
            services.backup_validate(file=path.name, identity=identity)
        assert str(tmp_path) not in str(excinfo.value) and "NOTAKEY" not in str(excinfo.value)


def test_recipient_problems_are_refused_before_anything_is_written(seeded, keys, settings):
    seeded()
    settings.ADCP_BACKUP_AGE_RECIPIENTS = []
    with pytest.raises(BackupConfigurationError, match="ADCP_BACKUP_AGE_RECIPIENTS is empty"):
        services.backup_create(encrypt=True)
    settings.ADCP_BACKUP_AGE_RECIPIENTS = "ssh-ed25519 AAAA"
    with pytest.raises(BackupConfigurationError, match="not an age public key"):
        services.backup_create(encrypt=True)
    settings.ADCP_BACKUP_AGE_RECIPIENTS = "age1notavalidkey"
    with pytest.raises(BackupConfigurationError, match="not a valid age public key"):
        services.backup_create(encrypt=True)
    assert backup_names() == []
    # several recipients, comma-separated as in the environment: each of them can decrypt
    settings.ADCP_BACKUP_AGE_RECIPIENTS = f"{keys['public']}, {keys['other_public']}"
    result = services.backup_create(encrypt=True)
    for identity in (keys["identity"], keys["other_identity"]):
        assert services.backup_validate(file=result.name, identity=identity).valid


# -- listing and display ---------------------------------------------------------------------------------
def test_encrypted_backups_are_listed_as_encrypted_without_a_key(seeded, keys):
    seeded()
    encrypted = services.backup_create(encrypt=True)
    plain = services.backup_create()
    entries = {e.name: e for e in services.backup_list()}
    assert entries[encrypted.name].format == "adcp-backup (encrypted)"
    assert entries[encrypted.name].encrypted and entries[encrypted.name].counts is None
    assert entries[encrypted.name].error is None and entries[encrypted.name].created is not None
    assert entries[plain.name].counts == plain.counts

    code, out, _ = run_command("backup_list")
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith(encrypted.name))
    assert "adcp-backup (encrypted)" in line and re.search(r"\sencrypted +origin unknown$", line)
    assert "unreadable" not in out

    code, out, _ = run_command("backup_list", "--json", "--identity", str(keys["identity"]))
    listed = {e["name"]: e for e in json.loads(out)["backups"]}
    assert listed[encrypted.name]["counts"] == encrypted.counts
    assert listed[encrypted.name]["format"] == "adcp-backup v3" and listed[encrypted.name]["encrypted"] is True
    assert listed[encrypted.name]["created_at"] == encrypted.created_at

    # with a key that does not fit, still listed as encrypted rather than as unreadable
    wrong = {e.name: e for e in services.backup_list(identity=keys["other_identity"])}
    assert wrong[encrypted.name].format == "adcp-backup (encrypted)" and wrong[encrypted.name].error is None


def test_backup_info_never_prints_the_identity_path_or_key(seeded, keys, settings):
    seeded()
    settings.ADCP_BACKUP_AGE_IDENTITY = str(keys["identity"])
    services.backup_create(encrypt=True)
    secret_line = next(line for line in keys["identity"].read_text().splitlines() if line.startswith("AGE-SECRET"))
    for args in ((), ("--json",), ("--identity", str(keys["identity"]))):
        code, out, err = run_command("backup_info", *args)
        assert code == 0
        assert str(keys["identity"]) not in out + err and secret_line not in out + err
        assert "AGE-SECRET-KEY" not in out + err
    code, out, _ = run_command("backup_info", "--json")
    info = json.loads(out)
    assert info["settings"]["encryption"]["settings"]["ADCP_BACKUP_AGE_IDENTITY"] == "set"
    assert info["settings"]["encryption"]["encrypted_backups"] == 1
    assert info["backups"]["count"] == 1 and info["backups"]["unreadable"] == []


def test_monitoring_and_prune_accept_encrypted_backups_on_a_host_without_the_key(seeded, keys, settings):
    """The host that writes backups holds only public keys: backup_info --max-age and backup_prune still work."""
    seeded()
    names = [services.backup_create(encrypt=True).name for _ in range(3)]
    code, out, _ = run_command("backup_info", "--max-age", "1h", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["newest"]["name"] in names and info["stale"] is False
    result = services.backup_prune(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert len(result.removed) == 2 and len(backup_names()) == 1


def test_command_line_round_trip_with_identity(seeded, keys):
    seeded()
    before = table_state()
    code, out, _ = run_command("backup_create", "--encrypt", "--compression", "zstd", "--json")
    created = json.loads(out)
    assert code == 0 and created["encrypted"] and created["name"].endswith(".jsonl.zst.age")
    code, out, _ = run_command("backup_validate", created["name"], "--identity", str(keys["identity"]), "--json")
    assert code == 0 and json.loads(out)["valid"] and json.loads(out)["encrypted"]
    modify_database()
    code, out, _ = run_command("backup_restore", created["name"], "--force", "--no-safety-backup",
                               "--identity", str(keys["identity"]), "--json")
    assert code == 0 and json.loads(out)["restored"] == created["counts"]
    assert table_state() == before


# -- files, streaming and resources ------------------------------------------------------------------------------
def test_backup_files_are_created_0600(seeded, keys, tmp_path):
    seeded()
    previous = os.umask(0o022)  # the usual umask, which would leave other files readable by everyone
    try:
        in_storage = services.backup_create(encrypt=True)
        plain = services.backup_create()
        (tmp_path / "out").mkdir()
        output = services.backup_create(encrypt=True, output=str(tmp_path / "out"))
        restored = services.backup_restore(file=plain.name)
    finally:
        os.umask(previous)
    safety = services.backup_list()[0]
    assert safety.name == restored.safety_backup
    for path in (in_storage.path, plain.path, output.path, safety.path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert stat.S_IMODE(os.stat(Path(plain.path).parent).st_mode) == 0o700


class CountingReader:
    def __init__(self, raw: io.BufferedIOBase) -> None:
        self.raw = raw
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.consumed += len(data)
        return data


def test_the_decrypting_reader_reads_ahead_a_bounded_amount(keys, tmp_path):
    encrypted = encrypted_zeros(tmp_path, 24, keys["public"])
    threads = set(threading.enumerate())
    with open(encrypted, "rb") as f:
        source = CountingReader(f)
        reader = crypto.decrypting_reader(source, load_identities(keys["identity"]))
        assert reader.read(1000) == bytes(1000)
        time.sleep(0.5)  # give the worker every chance to run ahead
        assert source.consumed < 4 << 20  # of 24 MiB: the worker waits for the reader
        total = 1000
        while chunk := reader.read(1 << 20):
            assert not chunk.strip(b"\0")
            total += len(chunk)
        assert total == 24 << 20
        reader.close()
    assert not set(threading.enumerate()) - threads  # a thread of an earlier test may end meanwhile


def test_the_encrypting_writer_passes_data_on_as_it_goes(keys, tmp_path):
    recipients = parse_recipients([keys["public"]])
    target = tmp_path / "out.age"
    with open(target, "wb") as raw:
        sink = CountingSink(raw)
        with crypto.encrypting(sink, recipients) as writer:
            block = bytes(1 << 20)
            for _ in range(24):
                writer.write(block)
            assert sink.written > 16 << 20  # at most a few MiB are in flight, never the whole stream
    assert decrypt(target, keys["identity"]) == bytes(24 << 20)


class CountingSink:
    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return self.raw.write(data)


def test_no_thread_or_file_descriptor_outlives_an_operation(encrypted_backup, keys, tmp_path):
    path = encrypted_backup(compression="gzip")
    truncated = tmp_path / "cut.jsonl.gz.age"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    threads = set(threading.enumerate())
    descriptors = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        services.backup_list(identity=keys["identity"])  # reads only each header, then stops the worker
        services.backup_validate(file=path.name, identity=keys["identity"])
        services.backup_restore_plan(file=path.name, identity=keys["identity"])
        with pytest.raises(InvalidBackup):
            services.backup_restore(file=str(truncated), identity=keys["identity"], safety_backup=False)
        with pytest.raises(EncryptionKeyError):
            services.backup_restore(file=path.name, identity=keys["other_identity"], safety_backup=False)
    with pytest.raises(BackupError):  # an encryption abandoned half-way (the callback fails) is stopped too
        services.backup_create(encrypt=True, progress=_fail_on_product)
    assert not set(threading.enumerate()) - threads  # a thread of an earlier test may end meanwhile
    assert len(os.listdir("/proc/self/fd")) == descriptors


def _fail_on_product(event: Any) -> None:
    if event.table == "product" and event.done:
        raise BackupError("stopped by the caller")


def test_an_abandoned_backup_leaves_no_file(seeded, keys, settings):
    seeded()
    with pytest.raises(BackupError, match="stopped by the caller"):
        services.backup_create(encrypt=True, progress=_fail_on_product)
    from adcp_backup.locking import lock_path

    assert [f for f in os.listdir(settings.ADCP_BACKUP_DIR) if f != lock_path().name] == []



def test_an_abandoned_decrypting_reader_stops_its_worker(keys, tmp_path):
    import gc

    encrypted = encrypted_zeros(tmp_path, 16, keys["public"])
    threads = set(threading.enumerate())
    with open(encrypted, "rb") as handle:
        reader = crypto.decrypting_reader(handle, load_identities(keys["identity"]))  # nothing will close it
        assert reader.read(100) == bytes(100)
        assert len(set(threading.enumerate()) - threads) == 1  # the worker waits, 15 MiB short of the end
        del reader
        gc.collect()
        assert not set(threading.enumerate()) - threads  # a thread of an earlier test may end meanwhile


def test_open_reader_owns_its_decrypting_layer_and_stops_it_when_the_block_ends(keys, tmp_path):
    path = tmp_path / "large.jsonl.age"
    with open(path, "wb") as raw, crypto.encrypting(raw, parse_recipients([keys["public"]])) as sink:
        writer = BackupWriter(sink)
        writer.header({"created_at": "2025-01-01T00:00:00+00:00"})
        writer.begin_table("t", [{"name": "id", "family": "integer", "nullable": False},
                                 {"name": "text", "family": "text", "nullable": False}])
        for start in range(0, 200_000, 10_000):  # about 12 MiB: far more than the worker reads ahead
            writer.rows([[i, "x" * 50] for i in range(start, start + 10_000)])
        writer.end_table()
        writer.trailer()
    threads = set(threading.enumerate())
    with open(path, "rb") as handle:
        with open_reader(handle, tables=(), identities=lambda: load_identities(keys["identity"])) as reader:
            events = reader.events()
            assert isinstance(next(events), TableStart) and isinstance(next(events), RowBatch)
            assert len(set(threading.enumerate()) - threads) == 1  # the worker waits, most of the file ahead
        assert not set(threading.enumerate()) - threads  # stopped and joined when the block ended
        handle.seek(0)
        with pytest.raises(RuntimeError, match="stopped inside the block"), \
                open_reader(handle, tables=(), identities=lambda: load_identities(keys["identity"])) as reader:
            next(reader.events())
            assert len(set(threading.enumerate()) - threads) == 1
            raise RuntimeError("stopped inside the block")
        assert not set(threading.enumerate()) - threads  # a thread of an earlier test may end meanwhile
        assert not handle.closed  # the file belongs to its owner


# -- passphrase files ----------------------------------------------------------------------------------------
def armor(data: bytes) -> bytes:
    """age's ASCII armor: base64 in lines of 64 columns between its BEGIN and END lines."""
    text = base64.b64encode(data)
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return b"-----BEGIN AGE ENCRYPTED FILE-----\n" + b"\n".join(lines) + b"\n-----END AGE ENCRYPTED FILE-----\n"


@pytest.mark.slow
@pytest.mark.parametrize("armored", [False, True], ids=["binary", "armored"])
def test_a_passphrase_encrypted_file_is_recognised_and_refused_with_the_database_unchanged(
        seeded, keys, tmp_path, settings, armored):
    seeded()
    plain = services.backup_create(compression="gzip")
    sealed = pyrage.passphrase.encrypt(Path(plain.path).read_bytes(), "correct horse battery staple")
    target = tmp_path / "by-passphrase.jsonl.gz.age"
    target.write_bytes(armor(sealed) if armored else sealed)
    assert crypto.is_passphrase_encrypted(target.read_bytes()[:256])
    settings.ADCP_BACKUP_AGE_IDENTITY = str(keys["identity"])
    with pytest.raises(EncryptionKeyError, match=r"encrypted with a passphrase \(age -p\)"):
        services.backup_validate(file=str(target))
    code, _out, message = run_command("backup_validate", str(target))
    assert code == 1 and "passphrase" in message and "age -d FILE | age -r" in message
    modify_database()
    state = table_state()
    code, _out, message = run_command("backup_restore", str(target), "--force")
    assert code == 1 and "passphrase" in message
    assert table_state() == state
    entry = next(e for e in services.backup_list() if e.name == plain.name)
    assert not crypto.is_passphrase_encrypted(Path(entry.path).read_bytes()[:256])


def test_a_file_encrypted_to_a_key_is_not_taken_for_a_passphrase_file(seeded, keys):
    seeded()
    for compression in ("none", "gzip"):
        head = Path(services.backup_create(compression=compression, encrypt=True).path).read_bytes()[:256]
        assert head.startswith(AGE_MAGIC)
        assert not crypto.is_passphrase_encrypted(head) and not crypto.is_passphrase_encrypted(armor(head)[:256])

"""The management commands' wiring: options, prompts, exit codes and --json output."""
from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from adcp_backup import services

from .helpers import table_state


class Terminal(io.StringIO):
    """Typed answers on a terminal: what an operator at a shell would send."""

    def isatty(self) -> bool:
        return True


def run(*args, stdin=None):
    out, err = io.StringIO(), io.StringIO()
    kwargs = {"stdout": out, "stderr": err}
    if stdin is not None:
        kwargs["stdin"] = stdin
    try:
        call_command(*args, **kwargs)
        code = 0
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    return code, out.getvalue(), err.getvalue()


def test_create_json_output_has_the_contract_fields(seeded):
    seeded()
    code, out, _err = run("backup_create", "--compress", "--json")
    assert code == 0
    data = json.loads(out)
    assert {"name", "path", "size", "sha256", "counts"} <= set(data)
    assert data["name"].endswith(".jsonl.gz")
    assert Path(data["path"]).is_absolute() and Path(data["path"]).stat().st_size == data["size"]
    assert data["counts"]["product"] == 60


def test_create_with_output_path_relative_to_the_working_directory(seeded, backup_env):
    seeded()
    code, out, _ = run("backup_create", "--compression", "zstd", "--output", "exports/nightly.jsonl.zst", "--json")
    assert code == 0, out
    target = backup_env / "exports" / "nightly.jsonl.zst"
    assert json.loads(out)["path"] == str(target) and target.exists()
    code, out, err = run("backup_create", "--output", "exports/nightly.jsonl.zst")
    assert code == 1 and "already exists" in err
    code, out, err = run("backup_validate", "exports/nightly.jsonl.zst", "--json")
    assert code == 0 and json.loads(out)["valid"] is True


def test_list_and_info_json(seeded):
    seeded()
    run("backup_create")
    run("backup_create", "--compression", "zstd")
    code, out, _ = run("backup_list", "--json")
    backups = json.loads(out)["backups"]
    assert code == 0 and len(backups) == 2
    assert {"name", "created_at", "size", "format", "compression", "encrypted", "counts"} <= set(backups[0])
    assert backups[0]["created_at"] >= backups[1]["created_at"]
    code, out, _ = run("backup_list", "--limit", "1", "--json")
    assert len(json.loads(out)["backups"]) == 1
    code, out, _ = run("backup_info", "--json")
    info = json.loads(out)
    assert code == 0 and {"database", "storage", "backups", "newest"} <= set(info)
    assert info["database"]["tables"]["product"] == 60 and info["backups"]["count"] == 2


def test_info_max_age_exits_1_when_backups_are_stale(seeded):
    seeded()
    code, _, err = run("backup_info", "--max-age", "26h")
    assert code == 1 and "no backup" in err
    run("backup_create")
    assert run("backup_info", "--max-age", "26h")[0] == 0
    code, _, err = run("backup_info", "--max-age", "soon")
    assert code == 1 and "not a duration" in err


def test_validate_exit_codes_and_problems_in_json(seeded, backup_env):
    seeded()
    name = services.backup_create(compression="none").name
    assert run("backup_validate", name)[0] == 0
    path = backup_env / "backups" / name
    data = path.read_bytes()
    bad = backup_env / "bad.jsonl"
    bad.write_bytes(data[: len(data) - 200])
    code, out, _ = run("backup_validate", str(bad), "--json")
    report = json.loads(out)
    assert code == 2 and report["valid"] is False
    assert report["problems"] and {"section", "row", "message"} <= set(report["problems"][0])
    code, out, err = run("backup_validate", "no-such-backup.jsonl.gz")
    assert code == 1 and "no backup named" in err


def test_restore_asks_for_the_word_yes(seeded):
    seeded()
    name = services.backup_create().name
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE tenant SET name = 'kept' WHERE id = 1")
    state = table_state()
    code, _, err = run("backup_restore", name, stdin=Terminal("y\n"))
    assert code == 1 and "cancelled" in err and "Type 'yes'" in err
    assert table_state() == state
    code, out, err = run("backup_restore", name, "--no-safety-backup", stdin=Terminal("yes\n"))
    assert code == 0, err
    assert "Restored" in out and table_state() != state


def test_restore_refuses_without_a_terminal_unless_forced(seeded):
    seeded()
    name = services.backup_create().name
    state = table_state()
    code, _, err = run("backup_restore", name, stdin=io.StringIO("yes\n"))
    assert code == 1 and "no terminal" in err
    assert table_state() == state
    code, out, _ = run("backup_restore", name, "--no-input", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["restored"]["product"] == 60 and result["dry_run"] is False and result["safety_backup"]


def test_restore_latest_dry_run_and_validate_only(seeded):
    seeded()
    services.backup_create()
    code, out, _ = run("backup_restore", "latest", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["dry_run"] is True and json.loads(out)["safety_backup"] is None
    code, out, _ = run("backup_restore", "latest", "--validate-only")
    assert code == 0 and "nothing was restored" in out


def test_restore_of_an_invalid_file_exits_2_and_changes_nothing(seeded, backup_env):
    seeded()
    bad = backup_env / "bad.jsonl"
    bad.write_text('{"kind":"header","format":"adcp-backup","version":3}\n[1]\n')
    state = table_state()
    code, out, err = run("backup_restore", str(bad), "--force", "--json")
    assert code == 2 and json.loads(out)["problems"]
    assert table_state() == state


def test_user_mistakes_are_one_clear_sentence_not_a_traceback(seeded, backup_env):
    seeded()
    code, _, err = run("backup_restore", "../../etc/passwd", "--force")
    assert code == 1 and "There is no file" in err and "Traceback" not in err
    code, _, err = run("backup_restore", str(backup_env), "--force")
    assert code == 1 and "is a folder" in err
    code, _, err = run("backup_create", "--database", "nope")
    assert code == 1 and "no database 'nope'" in err


def test_demo_command_is_idempotent(adcp_schema, backup_env):
    adcp_schema()
    code, out, _ = run("adcp_demo", "--products", "30", "--embeddings", "5", "--dim", "8")
    assert code == 0 and "Demo data written" in out
    state = table_state()
    code, out, _ = run("adcp_demo")
    assert code == 0 and "already hold data" in out
    assert table_state() == state


def test_progress_goes_to_stderr_and_json_stays_alone_on_stdout(seeded):
    seeded()
    out, err = io.StringIO(), io.StringIO()
    call_command("backup_create", "--json", stdout=out, stderr=err, verbosity=1)
    json.loads(out.getvalue())  # nothing but the JSON object on stdout
    # not a terminal: plain lines, at least the end of each table
    assert "backup product: 60/60 rows (100%) done" in err.getvalue().splitlines()
    out, err = io.StringIO(), io.StringIO()
    call_command("backup_create", "--json", stdout=out, stderr=err, verbosity=0)
    assert err.getvalue() == ""


def test_terminal_progress_draws_one_bar_in_place():
    from adcp_backup.progress import ProgressEvent, TerminalProgress

    screen = Terminal()
    progress = TerminalProgress(screen)
    progress(ProgressEvent("restore", "product", 0, 100))
    progress(ProgressEvent("restore", "product", 100, 100, finished=True))
    drawn = screen.getvalue()
    assert drawn.startswith("\r") and "[" + "#" * 30 + "] 100/100" in drawn and drawn.endswith("\n")


@pytest.mark.parametrize("verbosity", [0, 1])
def test_logging_reaches_the_operations_log(seeded, operations_log, verbosity):
    seeded()
    code, out, err = run("backup_create", "--json", "-v", str(verbosity))
    assert code == 0, err
    name = json.loads(out)["name"]
    lines = operations_log().splitlines()
    assert [line.split(" INFO ", 1)[1].split(":", 1)[0] for line in lines if f"Backup {name} written" in line] \
        == ["adcp_backup.services"]


@pytest.mark.parametrize("name,args", [
    ("backup_create", []), ("backup_restore", ["latest"]), ("backup_validate", ["latest"]), ("backup_list", []),
    ("backup_info", []), ("backup_prune", []),
])
def test_every_command_takes_database_json_and_verbosity(name, args):
    from django.core.management import load_command_class

    parser = load_command_class("adcp_backup", name).create_parser("manage.py", name)
    options = parser.parse_args([*args, "--database", "other", "--json", "-v", "0"])
    assert options.database == "other" and options.as_json is True and options.verbosity == 0


def _rehash_table(data: bytes) -> bytes:
    """Change one product row and recompute its table's checksum (not the trailer's)."""
    import hashlib

    lines = data.split(b"\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b'{"kind":"table","name":"product"'))
    lines[start + 2] = lines[start + 2].replace(b",", b",9", 1)  # a different id, still valid JSON
    end = next(i for i in range(start, len(lines)) if lines[i].startswith(b'{"kind":"table_end"'))
    digest = hashlib.sha256(b"".join(line + b"\n" for line in lines[start + 1:end])).hexdigest()
    record = json.loads(lines[end])
    record["sha256"] = digest
    lines[end] = json.dumps(record, separators=(",", ":")).encode()
    return b"\n".join(lines)


CORRUPTIONS = {
    "truncated": (lambda d: d[: len(d) * 2 // 3], "truncated"),
    "flipped byte": (lambda d: d[: len(d) // 2] + bytes([d[len(d) // 2] ^ 0x55]) + d[len(d) // 2 + 1:],
                     "checksum mismatch|not valid JSON|damaged"),
    "flipped byte in a gzip file": (
        lambda d: (lambda z: z[: len(z) // 2] + bytes([z[len(z) // 2] ^ 0x55]) + z[len(z) // 2 + 1:])(
            __import__("gzip").compress(d)),
        "damaged|checksum mismatch|not valid JSON|truncated"),
    "changed row with its checksum": (_rehash_table, "checksum mismatch: the file.s records"),
    "missing trailer": (lambda d: d[: d.rstrip(b"\n").rfind(b"\n") + 1], "trailer is missing"),
    "unknown version": (lambda d: d.replace(b'"version":3', b'"version":7', 1), "unsupported format version 7"),
    "empty": (lambda d: b"", "empty"),
    "not JSON": (lambda d: b"this is not a backup\n" * 3, "neither the native format nor a known legacy"),
    "gzip of garbage": (lambda d: __import__("gzip").compress(b"\x00garbage" * 100), "neither the native"),
    "garbage behind gzip magic": (lambda d: b"\x1f\x8b\x08\x00" + b"garbage" * 100, "gzip stream is damaged"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_a_corrupt_file_is_invalid_and_never_restored(seeded, backup_env, kind):
    seeded()
    made = services.backup_create(compression="none")
    damage, reason = CORRUPTIONS[kind]
    bad = backup_env / f"bad-{kind.replace(' ', '-')}.jsonl"
    bad.write_bytes(damage(Path(made.path).read_bytes()))
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE product SET name = 'current' WHERE id < 5")
    state = table_state()
    settings_before = (backup_env / "data" / "app_settings.json").read_bytes()

    code, out, _ = run("backup_validate", str(bad), "--json")
    report = json.loads(out)
    assert code == 2 and report["valid"] is False
    assert any(re.search(reason, p["message"]) for p in report["problems"]), report["problems"]

    code, out, err = run("backup_restore", str(bad), "--force", "--json")
    assert code == 2, err
    assert re.search(reason, json.loads(out)["error"] + json.dumps(json.loads(out).get("problems")))
    assert table_state() == state
    assert (backup_env / "data" / "app_settings.json").read_bytes() == settings_before


def test_plain_progress_prints_a_line_per_interval_and_the_end_of_each_table():
    from adcp_backup.progress import ProgressEvent, TerminalProgress

    events = [ProgressEvent("backup", "product", 0, 100), ProgressEvent("backup", "product", 50, 100),
              ProgressEvent("backup", "product", 100, 100, finished=True)]
    quiet, chatty = io.StringIO(), io.StringIO()
    for stream, interval in ((quiet, 3600.0), (chatty, 0.0)):
        progress = TerminalProgress(stream, interval=interval)
        for event in events:
            progress(event)
    assert quiet.getvalue().splitlines() == ["backup product: 100/100 rows (100%) done"]
    assert chatty.getvalue().splitlines() == ["backup product: 50/100 rows (50%)",
                                              "backup product: 100/100 rows (100%) done"]


def test_a_command_that_needs_neither_the_admin_nor_celery_does_not_import_them(tmp_path):
    """Start-up time is import time: backup_list must not pay for Celery, the admin's views, the drill or the
    MariaDB driver (measured with python -X importtime, as docs/performance.md does)."""
    from .scheduling_fixtures import PYTHON, REPO, project_env

    env = project_env(tmp_path)
    done = subprocess.run([PYTHON, "-X", "importtime", str(REPO / "manage.py"), "backup_list", "--json"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "adcp_backup.services" in imported and "django" in imported  # the measurement works
    assert not imported & {"celery", "kombu", "project.celery", "adcp_backup.admin_views", "adcp_backup.jobs",
                           "adcp_backup.tasks", "adcp_backup.notifications", "adcp_backup.drill", "pymysql"}

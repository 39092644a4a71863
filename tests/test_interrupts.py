"""SIGTERM, SIGHUP and SIGKILL at several points of a backup, to a folder and to S3 (a moto server): what is left.

SIGTERM and SIGHUP unwind like SIGINT: the command exits 1, its temporary file is gone, an S3 multipart upload
is aborted, the lock is free. SIGKILL cannot be handled: it leaves a partial file, which backup_info reports
and backup_prune removes once it is a day old (and, on S3, an unfinished upload for the bucket's lifecycle rule).
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from adcp_backup import locking, services
from adcp_backup.models import BackupJob

from .processes import BIG, manage, signal_at_marker


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != locking.LOCK_FILE_NAME) if folder.exists() else []


@pytest.fixture
def big(seeded, backup_env):
    seeded(size=BIG)
    return backup_env


# -- to a folder ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("signum", "marker"), [
    (signal.SIGTERM, "backup product"),
    (signal.SIGHUP, "backup product"),
    (signal.SIGTERM, "backup product_embeddings"),
    (signal.SIGHUP, "backup externalagent"),
], ids=["term-products", "hup-products", "term-embeddings", "hup-agents"])
def test_sigterm_and_sighup_leave_nothing_in_the_backup_folder(big, signum, marker):
    proc = manage(["backup_create", "--compress"], big)
    stderr = signal_at_marker(proc, marker, signum)
    assert proc.returncode == 1, stderr
    assert f"Interrupted by {signal.Signals(signum).name}" in stderr and "Traceback" not in stderr
    assert visible(big / "backups") == []
    assert services.backup_list() == [] and locking.current_holder() is None
    assert services.backup_info().backups["partial_files"] == []


@pytest.mark.slow
def test_sigkill_leaves_a_partial_file_that_info_reports_and_prune_removes_after_a_day(big, settings):
    proc = manage(["backup_create", "--compress"], big)
    signal_at_marker(proc, "backup product", signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    [partial] = [big / "backups" / name for name in visible(big / "backups")]
    assert partial.name.startswith(".adcp-backup-") and partial.name.endswith(".partial")
    assert oct(partial.stat().st_mode & 0o777) == oct(0o600)
    info = services.backup_info()
    assert [p["path"] for p in info.backups["partial_files"]] == [str(partial)]
    assert services.backup_prune().partials_removed == []  # a backup may still be writing it: not yet
    assert partial.exists()
    day_and_a_bit = time.time() - 25 * 3600
    os.utime(partial, (day_and_a_bit, day_and_a_bit))
    assert services.backup_prune(dry_run=True).partials_removed == [str(partial)] and partial.exists()
    assert services.backup_prune().partials_removed == [str(partial)]
    assert visible(big / "backups") == []


# -- to S3 -----------------------------------------------------------------------------------------------
@pytest.fixture
def bucket(s3_endpoint, big):
    import boto3

    from .s3_fixtures import ACCESS_KEY, REGION, SECRET_KEY

    name = f"adcp-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY, region_name=REGION)
    client.create_bucket(Bucket=name)
    spool = big / "spool"
    spool.mkdir()
    env = {"ADCP_BACKUP_S3_BUCKET": name, "ADCP_BACKUP_S3_PREFIX": "nightly", "ADCP_BACKUP_S3_ENDPOINT_URL":
           s3_endpoint, "ADCP_BACKUP_S3_REGION": REGION, "ADCP_BACKUP_S3_ADDRESSING_STYLE": "path",
           "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "ADCP_BACKUP_TEMP_DIR": str(spool),
           "ADCP_BACKUP_S3_MULTIPART_MB": "5", "ADCP_BACKUP_S3_CONCURRENCY": "1"}
    return {"client": client, "name": name, "env": env, "spool": spool}


def uploads_in_progress(bucket: dict[str, Any]) -> list[dict[str, Any]]:
    return bucket["client"].list_multipart_uploads(Bucket=bucket["name"]).get("Uploads", [])


def keys(bucket: dict[str, Any]) -> list[str]:
    return [o["Key"] for o in bucket["client"].list_objects_v2(Bucket=bucket["name"]).get("Contents", [])]


def signal_during_upload(proc: subprocess.Popen[str], bucket: dict[str, Any], signum: int) -> str:
    """Send ``signum`` once S3 holds an unfinished multipart upload of the backup."""
    found = threading.Event()
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read() if proc.stderr else ""))
    reader.start()
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if uploads_in_progress(bucket):
            proc.send_signal(signum)
            found.set()
            break
        time.sleep(0.01)
    proc.wait(timeout=120)
    reader.join(60)
    if not found.is_set():
        pytest.fail(f"no multipart upload was seen (exit {proc.returncode}): {''.join(stderr)}")
    return "".join(stderr)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["term", "hup"])
def test_sigterm_during_the_s3_upload_aborts_it_and_removes_the_spooled_copy(bucket, big, signum):
    proc = manage(["backup_create", "--compression", "none"], big, **bucket["env"])
    stderr = signal_during_upload(proc, bucket, signum)
    assert proc.returncode == 1, stderr
    assert f"Interrupted by {signal.Signals(signum).name}" in stderr
    assert uploads_in_progress(bucket) == []  # nothing left for S3 to bill
    assert keys(bucket) == []
    assert list(bucket["spool"].iterdir()) == []


@pytest.mark.slow
def test_sigterm_while_the_s3_backup_is_being_written_leaves_nothing(bucket, big):
    proc = manage(["backup_create", "--compression", "none"], big, **bucket["env"])
    stderr = signal_at_marker(proc, "backup product", signal.SIGTERM)
    assert proc.returncode == 1, stderr
    assert uploads_in_progress(bucket) == [] and keys(bucket) == []
    assert list(bucket["spool"].iterdir()) == []


@pytest.mark.slow
def test_sigkill_during_the_s3_upload_leaves_what_prune_and_the_lifecycle_rule_remove(bucket, big, settings):
    proc = manage(["backup_create", "--compression", "none"], big, **bucket["env"])
    signal_during_upload(proc, bucket, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert keys(bucket) == []  # never a half backup under a name
    [partial] = list(bucket["spool"].iterdir())
    settings.ADCP_BACKUP_TEMP_DIR = str(bucket["spool"])
    old = time.time() - 25 * 3600
    os.utime(partial, (old, old))
    assert services.backup_prune().partials_removed == [str(partial)]
    assert list(bucket["spool"].iterdir()) == []
    # The unfinished upload stays until aborted: what docs/storage.md's AbortIncompleteMultipartUpload rule is for.
    assert len(uploads_in_progress(bucket)) == 1


# -- a job runner ----------------------------------------------------------------------------------------
def test_a_job_interrupted_by_sigterm_is_marked_failed_and_frees_the_lock(seeded, backup_env):
    from adcp_backup import jobs, signals

    seeded()
    job = BackupJob.objects.create(kind=BackupJob.Kind.CREATE, options={}, database="default", origin="admin")

    def terminate(sender: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the job runs, as `systemctl stop` would
        time.sleep(1)

    previous = signal.getsignal(signal.SIGTERM)
    signals.backup_created.connect(terminate)
    try:
        with pytest.raises(KeyboardInterrupt):
            jobs.run_job(job.pk)
    finally:
        signals.backup_created.disconnect(terminate)
    assert signal.getsignal(signal.SIGTERM) == previous  # the runner's handler is gone again
    job.refresh_from_db()
    assert job.status == BackupJob.Status.FAILED and job.finished_at is not None
    assert "Interrupted by SIGTERM" in job.error
    assert locking.current_holder() is None
    with locking.operation_lock("backup", timeout=0):
        pass

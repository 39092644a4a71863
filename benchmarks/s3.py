#!/usr/bin/env python
"""Benchmark of S3 storage: peak memory of uploading and reading a backup-sized object, by object size.

Starts moto's S3 server as its own process on 127.0.0.1 (so its memory is not counted), then, for each
size, runs three child processes and reports each one's wall time and peak RSS:
  upload   BackupStorage.writer(): spool to a temporary file, then S3Storage.save() (multipart)
  stream   BackupStorage.open(): the streamed GET that restore, validate and list use
  s3file   S3Storage.open().read() in 1 MiB pieces: django-storages' own reading, for comparison

Usage: .venv/bin/python benchmarks/s3.py [SIZE_MB ...]   (default: 64 256)
Results belong in docs/storage.md; nothing here is asserted by the test suite.
"""
from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 1 << 20
BUCKET = "adcp-bench"


def transfer_config() -> object:
    from boto3.s3.transfer import TransferConfig

    # As project/settings.py configures it by default; BENCH_MAX_IN_MEMORY=10 shows boto3's own default.
    config = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=4)
    config.max_in_memory_upload_chunks = int(os.environ.get("BENCH_MAX_IN_MEMORY", "4"))
    return config


def storage_settings(endpoint: str) -> dict[str, object]:
    return {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "adcp_backup": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET, "endpoint_url": endpoint, "access_key": "bench", "secret_key": "bench",
                "region_name": "us-east-1", "addressing_style": "path", "signature_version": "s3v4",
                "file_overwrite": False,
                "transfer_config": transfer_config(),
            },
        },
    }


def child(mode: str, endpoint: str, size_mb: int) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    import django
    from django.conf import settings

    django.setup()
    settings.STORAGES = storage_settings(endpoint)
    from django.core.files.storage import storages

    from adcp_backup.storage import BackupStorage

    name = f"adcp-backup-bench-{size_mb}.jsonl"
    storage = BackupStorage()
    block = b"x" * (BLOCK - 1) + b"\n"
    started = time.perf_counter()
    if mode == "upload":
        with storage.writer(name, verify=False) as out:
            for _ in range(size_mb):
                out.write(block)
    else:
        handle = storage.open(name) if mode == "stream" else storages["adcp_backup"].open(name, "rb")
        total = 0
        while chunk := handle.read(BLOCK):
            total += len(chunk)
        handle.close()
        assert total == size_mb * BLOCK, total
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{size_mb:>6} MiB  {mode:<7} {seconds:6.2f} s  peak RSS {peak:6.0f} MiB", flush=True)


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--child":
        child(argv[1], argv[2], int(argv[3]))
        return
    sizes = [int(a) for a in argv] or [64, 256]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                              aws_secret_access_key="bench")
        for _ in range(100):
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                time.sleep(0.1)
        for size in sizes:
            for mode in ("upload", "stream", "s3file"):
                subprocess.run([sys.executable, __file__, "--child", mode, endpoint, str(size)], check=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main(sys.argv[1:])

"""Fixtures of the S3 tests: a moto server on 127.0.0.1 per test module, and a fresh bucket as the backup storage."""
from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import storages
from moto.server import ThreadedMotoServer

ACCESS_KEY = "adcp-test-access-key"
SECRET_KEY = "adcp-test-secret-key-do-not-print"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@dataclass
class Bucket:
    name: str
    prefix: str
    endpoint: str
    client: Any

    def keys(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))

    def head(self, key: str) -> dict[str, Any]:
        head: dict[str, Any] = self.client.head_object(Bucket=self.name, Key=key)
        return head


def s3_options(endpoint: str, bucket: str, prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "bucket_name": bucket,
        "location": prefix,
        "endpoint_url": endpoint,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "region_name": REGION,
        "addressing_style": "path",
        "signature_version": "s3v4",
        "file_overwrite": False,
        "object_parameters": {"ContentType": "application/octet-stream"},
        **extra,
    }


@pytest.fixture
def s3(s3_endpoint: str, settings: Any, backup_env: Path) -> Bucket:
    """A fresh bucket, configured as the backup storage; local spooling goes to a folder of the test's own."""
    bucket, prefix = f"adcp-{uuid.uuid4().hex[:12]}", "nightly/db"
    configure(settings, s3_options(s3_endpoint, bucket, prefix))
    settings.ADCP_BACKUP_TEMP_DIR = str(backup_env / "spool")
    (backup_env / "spool").mkdir()
    storage: Any = storages["adcp_backup"]  # django-storages' S3Storage
    client = storage.connection.meta.client
    client.create_bucket(Bucket=bucket)
    return Bucket(bucket, prefix, s3_endpoint, client)


def configure(settings: Any, options: dict[str, Any]) -> None:
    settings.STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "adcp_backup": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
    }

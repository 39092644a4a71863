"""Benchmark of the age layers: time and peak memory of encrypting and decrypting files of several sizes.

Usage: .venv/bin/python benchmarks/encryption.py [SIZE_MB ...]   (default: 64 256)

Each size runs in a fresh process so that its peak RSS is its own. The data is pseudo-random text in
1 MiB blocks, written through crypto.EncryptingWriter to a file and read back through
crypto.DecryptingReader, exactly as backup_create and backup_restore do. Results belong in
docs/security.md; nothing here is asserted by the test suite.
"""
from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 1 << 20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(size_mb: int) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    import pyrage

    from adcp_backup.format import crypto

    identity = pyrage.x25519.Identity.generate()
    recipients = [identity.to_public()]
    block = hashlib.sha256(b"seed").hexdigest().encode() * (BLOCK // 64)
    baseline = peak_rss_mib()
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "bench.age"
        started = time.perf_counter()
        with open(target, "wb") as raw, crypto.encrypting(raw, recipients) as writer:
            for _ in range(size_mb):
                writer.write(block)
        encrypt_seconds = time.perf_counter() - started
        encrypt_peak = peak_rss_mib()

        started = time.perf_counter()
        total = 0
        with open(target, "rb") as raw:
            reader = crypto.DecryptingReader(raw, [identity])
            while chunk := reader.read(BLOCK):
                total += len(chunk)
            reader.close()
        decrypt_seconds = time.perf_counter() - started
        assert total == size_mb * BLOCK
        decrypt_peak = peak_rss_mib()
    print(f"{size_mb:>8} MiB  baseline {baseline:6.0f} MiB  "
          f"encrypt {encrypt_seconds:6.2f} s ({size_mb / encrypt_seconds:6.0f} MiB/s) peak {encrypt_peak:6.0f} MiB  "
          f"decrypt {decrypt_seconds:6.2f} s ({size_mb / decrypt_seconds:6.0f} MiB/s) peak {decrypt_peak:6.0f} MiB")


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "--one":
        measure(int(argv[1]))
        return
    for size in [int(a) for a in argv] or [64, 256]:
        subprocess.run([sys.executable, __file__, "--one", str(size)], check=True)


if __name__ == "__main__":
    main(sys.argv[1:])

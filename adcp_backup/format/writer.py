"""Writes the native format, version 3: JSON Lines with per-table checksums and a trailer.

Line 1 is the header; each table is a ``table`` line, its rows (one JSON array each) and a
``table_end`` line carrying the row count and the SHA-256 of the row lines; settings files and the
environment follow; the last line is the trailer. The trailer's SHA-256 covers every line before it
except the row lines, which the table checksums inside the ``table_end`` lines already cover.
"""
from __future__ import annotations

import hashlib
from base64 import b64encode
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from .codecs import Writable
from .values import row_encoder

FORMAT_NAME = "adcp-backup"
FORMAT_VERSION = 3


class BackupWriter:
    def __init__(self, stream: Writable) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self._counts: dict[str, int] = {}
        self._table: str | None = None
        self._table_hash: Any = None
        self._table_rows = 0
        self._encode: Any = None

    def _line(self, record: dict[str, Any]) -> None:
        data = orjson.dumps(record) + b"\n"
        self._hash.update(data)
        self._stream.write(data)

    @staticmethod
    def header_record(header: dict[str, Any]) -> dict[str, Any]:
        """The header line's record, as readers will see it."""
        return {"kind": "header", "format": FORMAT_NAME, "version": FORMAT_VERSION, **header}

    def header(self, header: dict[str, Any]) -> None:
        self._line(self.header_record(header))

    def begin_table(self, name: str, columns: Sequence[dict[str, Any]], **extra: Any) -> None:
        assert self._table is None, "a table is already open"
        self._table = name
        self._table_hash = hashlib.sha256()
        self._table_rows = 0
        self._encode = row_encoder([c["family"] for c in columns])
        self._line({"kind": "table", "name": name, "columns": list(columns), **extra})

    def rows(self, rows: Iterable[Sequence[Any]]) -> int:
        encode = self._encode
        lines = [encode(row) for row in rows]
        if not lines:
            return 0
        data = b"\n".join(lines) + b"\n"
        self._table_hash.update(data)
        self._stream.write(data)
        self._table_rows += len(lines)
        return len(lines)

    def end_table(self, **extra: Any) -> None:
        assert self._table is not None, "no table is open"
        self._line(
            {
                "kind": "table_end",
                "name": self._table,
                "rows": self._table_rows,
                "sha256": self._table_hash.hexdigest(),
                **extra,
            }
        )
        self._counts[self._table] = self._table_rows
        self._table = None

    def file(self, *, path: str, content: bytes | None, mode: int | None = None, withheld: str | None = None) -> None:
        if withheld is not None:  # held back on purpose (secrets in an unencrypted backup): no content at all
            self._line({"kind": "file", "path": path, "withheld": withheld})
            return
        if content is None:
            self._line({"kind": "file", "path": path, "missing": True})
            return
        self._line(
            {
                "kind": "file",
                "path": path,
                "size": len(content),
                "mode": mode,
                "sha256": hashlib.sha256(content).hexdigest(),
                "content_b64": b64encode(content).decode("ascii"),
            }
        )

    def environment(self, record: dict[str, Any]) -> None:
        self._line({"kind": "environment", **record})

    def trailer(self, sign: Callable[[str, dict[str, int]], dict[str, str]] | None = None) -> dict[str, int]:
        """The last line; ``sign(sha256, counts)`` returns the trailer's signature (see adcp_backup.signing)."""
        assert self._table is None, "a table is still open"
        counts = dict(self._counts)
        record: dict[str, Any] = {"kind": "trailer", "counts": counts, "sha256": self._hash.hexdigest()}
        if sign is not None:
            record["signature"] = sign(record["sha256"], counts)
        data = orjson.dumps(record) + b"\n"
        self._stream.write(data)
        return counts

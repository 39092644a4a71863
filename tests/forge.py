"""Hostile backup files with valid checksums: parse a native file, let a test edit it, seal it again.

Checksums prove that a file is intact, not who wrote it: anyone who can write a file can recompute them.
These helpers do exactly that, so a test can show that the content checks (not the checksums) refuse a file.
By default they also sign it again with this installation's key (as if the key had leaked), so a hostile file
is refused for its content and not merely for being unsigned; ``sign=False`` leaves it unsigned.
"""
from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from adcp_backup import signing

Line = dict[str, Any] | list[Any] | bytes  # a record, a row, or raw bytes written as they are (plus a newline)


def read_lines(path: str | Path) -> list[Line]:
    """Every line of a native backup (plain or gzip), records as dicts and rows as lists."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def _encode(line: Line) -> bytes:
    return line if isinstance(line, bytes) else orjson.dumps(line)


def seal(lines: Iterable[Line], *, sign: bool = True, name: str | None = None) -> Iterable[bytes]:
    """The lines with every table checksum, row count and the trailer recomputed (the trailer is replaced).

    ``sign``: the header (for a file called ``name``) and the trailer signed with this installation's key;
    otherwise every signature is left out."""
    file_hash = hashlib.sha256()
    table_hash: Any = None
    rows = 0
    counts: dict[str, int] = {}
    for line in lines:
        if isinstance(line, dict) and line.get("kind") == "trailer":
            continue
        if isinstance(line, dict) and line.get("kind") == "header":
            line = {k: v for k, v in line.items() if k != "signature"}
            if sign and name is not None:
                line["signature"] = signing.header_signature(line, name)
        is_row = not isinstance(line, dict) and table_hash is not None
        if isinstance(line, bytes):
            # Raw bytes are hashed as the reader hashes them: a row inside a table when they start with "[",
            # a record when they are a JSON object, and not at all otherwise (empty lines, garbage).
            is_row = table_hash is not None and line.startswith(b"[")
            if not is_row and not _is_object(line):
                yield line + b"\n"
                continue
        if isinstance(line, dict) and line.get("kind") == "table":
            table_hash, rows = hashlib.sha256(), 0
        elif isinstance(line, dict) and line.get("kind") == "table_end" and table_hash is not None:
            line = {**line, "rows": rows, "sha256": table_hash.hexdigest()}
            counts[str(line.get("name"))] = counts.get(str(line.get("name")), 0) + rows
            table_hash = None
        data = _encode(line) + b"\n"
        if is_row:
            table_hash.update(data)
            rows += 1
        else:
            file_hash.update(data)
        yield data
    trailer: dict[str, Any] = {"kind": "trailer", "counts": counts, "sha256": file_hash.hexdigest()}
    if sign:
        trailer["signature"] = signing.trailer_signature(trailer["sha256"], counts)
    yield orjson.dumps(trailer) + b"\n"


def _is_object(data: bytes) -> bool:
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


def write(path: str | Path, lines: Iterable[Line], *, compress: bool = False, sign: bool = True) -> Path:
    """Write sealed lines to ``path`` (gzip when ``compress``), streaming; signed for its name unless not ``sign``."""
    target = Path(path)
    opener: Callable[..., Any] = gzip.open if compress else open
    with opener(target, "wb") as out:
        for data in seal(lines, sign=sign, name=target.name):
            out.write(data)
    return target


def forge(source: str | Path, target: str | Path, edit: Callable[[list[Line]], Iterable[Line]], *,
          compress: bool = False, sign: bool = True) -> Path:
    """Read ``source``, apply ``edit`` to its lines and write a sealed copy to ``target`` (signed unless not
    ``sign``)."""
    return write(target, edit(read_lines(source)), compress=compress, sign=sign)


def header(lines: list[Line]) -> dict[str, Any]:
    first = lines[0]
    assert isinstance(first, dict) and first.get("kind") == "header"
    return first


def records(lines: list[Line], kind: str) -> list[dict[str, Any]]:
    return [line for line in lines if isinstance(line, dict) and line.get("kind") == kind]


def before_trailer(lines: list[Line], extra: Iterable[Line]) -> Iterable[Line]:
    """The lines with ``extra`` inserted just before the trailer (which seal replaces)."""
    for line in lines:
        if isinstance(line, dict) and line.get("kind") == "trailer":
            yield from extra
        yield line


def with_records(lines: list[Line], kind: str, edit: Callable[[dict[str, Any]], Line | None]) -> list[Line]:
    """The lines with every record of ``kind`` replaced by ``edit(record)`` (None drops it)."""
    out: list[Line] = []
    for line in lines:
        if isinstance(line, dict) and line.get("kind") == kind:
            edited = edit(dict(line))
            if edited is not None:
                out.append(edited)
        else:
            out.append(line)
    return out

"""Reads the native format, version 3, in one streaming pass that checks every checksum and count."""
from __future__ import annotations

import hashlib
from base64 import b64decode
from collections.abc import Iterator
from typing import IO, Any

import orjson

from ..exceptions import InvalidBackup, Problem, UnsignedBackup
from ..signing import UNSIGNED, Provenance, verify_trailer
from .events import End, EnvironmentRecord, FileRecord, RowBatch, TableEnd, TableStart
from .values import TAG_MARK, rows_decoder
from .writer import FORMAT_NAME, FORMAT_VERSION

CHUNK_SIZE = 1 << 20
HEADER_LIMIT = 16 << 20


def looks_native(head: bytes) -> bool:
    stripped = head.lstrip()
    return stripped.startswith(b'{"kind":"header"') or stripped.startswith(b'{"kind": "header"')


class NativeReader:
    """``strict``: raise InvalidBackup at the first problem (restore); otherwise collect them (validate)."""

    def __init__(self, stream: IO[bytes], *, compression: str = "none", encrypted: bool = False,
                 strict: bool = True) -> None:
        self._stream = stream
        self.compression = compression
        self.encrypted = encrypted
        self.strict = strict
        self.problems: list[Problem] = []
        # Known once the trailer was read; require_signature makes a strict reader refuse an unsigned file there.
        self.provenance: Provenance | None = None
        self.require_signature = False
        self._hash = hashlib.sha256()
        self._buffer = b""
        self._eof = False
        self.header = self._read_header()
        version = self.header.get("version")
        self.format = f"{FORMAT_NAME} v{version}"

    # -- low level -------------------------------------------------------------------------------
    def _problem(self, section: str, message: str, row: int | None = None) -> None:
        problem = Problem(section, message, row)
        if self.strict:
            raise InvalidBackup(problem)
        self.problems.append(problem)

    def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = self._stream.read(CHUNK_SIZE)
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    def _read_header(self) -> dict[str, Any]:
        while b"\n" not in self._buffer and len(self._buffer) < HEADER_LIMIT and self._fill():
            pass
        if not self._buffer.strip():
            raise InvalidBackup(Problem("header", "the file is empty"))
        end = self._buffer.find(b"\n")
        if end == -1:
            raise InvalidBackup(Problem("header", "the header line is incomplete: the file is truncated"))
        line = self._buffer[:end]
        self._buffer = self._buffer[end + 1:]
        try:
            header = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidBackup(Problem("header", f"the header is not valid JSON ({exc})")) from exc
        if not isinstance(header, dict) or header.get("kind") != "header":
            raise InvalidBackup(Problem("header", "the first line is not a backup header"))
        if header.get("format") != FORMAT_NAME:
            raise InvalidBackup(Problem("header", f"unknown format {header.get('format')!r}"))
        if header.get("version") != FORMAT_VERSION:
            raise InvalidBackup(
                Problem("header", f"unsupported format version {header.get('version')!r} "
                                  f"(this tool reads {FORMAT_VERSION})")
            )
        self._hash.update(line + b"\n")
        return header

    def _blocks(self) -> Iterator[bytes]:
        """Blocks of complete lines, about CHUNK_SIZE each; what follows the last newline waits."""
        while True:
            end = self._buffer.rfind(b"\n")
            if end != -1:
                block, self._buffer = self._buffer[: end + 1], self._buffer[end + 1:]
                yield block
            if not self._fill():
                break
        if self._buffer:
            yield self._buffer  # an unterminated last line: a truncated file, reported by the parser

    def structure(self) -> Iterator[TableStart | TableEnd]:
        """The file's table and table end records (columns; rows and checksum), found without parsing a single
        row: what a restore drill compares a restored table's recomputed checksum with. Checks nothing (use
        events() for that) and consumes the stream, like events()."""
        for block in self._blocks():
            at = block.find(b'{"kind":"table')
            while at != -1:
                end = block.find(b"\n", at)
                try:
                    record = orjson.loads(block[at:end if end != -1 else len(block)])
                except orjson.JSONDecodeError:
                    record = None
                if isinstance(record, dict) and isinstance(record.get("name"), str):
                    if record.get("kind") == "table":
                        start = self._start_table(record)
                        if start is not None:
                            yield start
                    elif record.get("kind") == "table_end":
                        rows = record.get("rows")
                        yield TableEnd(record["name"], rows if isinstance(rows, int) else -1, record.get("sha256"),
                                       record.get("sequence"))
                at = block.find(b'{"kind":"table', at + 1)

    # -- events ------------------------------------------------------------------------------------
    def events(self) -> Iterator[Any]:
        table: TableStart | None = None
        table_hash: Any = None
        decode: Any = None
        width = 0
        rows_seen = 0
        counts: dict[str, int] = {}
        done_tables: set[str] = set()
        trailer_seen = False

        for block in self._blocks():
            pos, size = 0, len(block)
            while pos < size:
                if trailer_seen:
                    if block[pos:].strip():
                        self._problem("trailer", "data follows the trailer")
                    pos = size
                    break
                if block[pos] == 0x5B:  # "[": a run of row lines
                    end = block.find(b"\n{", pos)
                    end = size if end == -1 else end + 1
                    run = block[pos:end]
                    pos = end
                    if table is None:
                        self._problem("rows", "row data outside of a table")
                        continue
                    if not run.endswith(b"\n"):
                        self._problem(table.name, "the file ends inside a row: it is truncated", rows_seen + 1)
                        continue
                    table_hash.update(run)
                    rows = self._parse_rows(run, table.name, rows_seen, width)
                    if rows is None:
                        rows_seen += run.count(b"\n")
                        continue
                    decode(rows, TAG_MARK in run)
                    batch = RowBatch(table.name, rows, rows_seen + 1)
                    rows_seen += len(rows)
                    yield batch
                    continue

                end = block.find(b"\n", pos)
                if end == -1:
                    self._problem("file", "the last line is incomplete: the file is truncated")
                    pos = size
                    break
                line = block[pos:end]
                pos = end + 1
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    section = table.name if table is not None else "file"
                    self._problem(section, "a line is not valid JSON", rows_seen + 1 if table else None)
                    continue
                if not isinstance(record, dict):
                    self._problem("file", "a line is neither a row nor a record")
                    continue
                kind = record.get("kind")
                if kind != "trailer":
                    self._hash.update(line + b"\n")

                if kind == "table":
                    if table is not None:
                        self._problem(table.name, "the table has no end marker")
                    table, table_hash, rows_seen = self._start_table(record), hashlib.sha256(), 0
                    if table is not None:
                        if table.name in done_tables:
                            self._problem(table.name, "the table appears twice")
                        decode = rows_decoder(table.families)
                        width = len(table.columns)
                        yield table
                elif kind == "table_end":
                    if table is None or record.get("name") != table.name:
                        self._problem(str(record.get("name")), "a table end without its table")
                        continue
                    if record.get("rows") != rows_seen:
                        self._problem(table.name, f"the file holds {rows_seen} rows, "
                                                  f"its table end says {record.get('rows')}")
                    if record.get("sha256") != table_hash.hexdigest():
                        self._problem(table.name, "checksum mismatch: the rows were changed or damaged")
                    counts[table.name] = rows_seen
                    done_tables.add(table.name)
                    yield TableEnd(table.name, rows_seen, record.get("sha256"), record.get("sequence"))
                    table = None
                elif kind == "file":
                    yield from self._file(record)
                elif kind == "environment":
                    yield EnvironmentRecord(
                        variables=record.get("variables") or {},
                        redacted=record.get("redacted") or [],
                        feature_flags=record.get("feature_flags") or {},
                    )
                elif kind == "trailer":
                    trailer_seen = True
                    if table is not None:
                        self._problem(table.name, "the table has no end marker")
                    if record.get("sha256") != self._hash.hexdigest():
                        self._problem("trailer", "checksum mismatch: the file's records were changed or damaged")
                    if record.get("counts") != counts:
                        self._problem("trailer", f"the trailer's counts {record.get('counts')} "
                                                 f"differ from the file's {counts}")
                    self._check_signature(record)
                else:
                    self._problem("file", f"unknown record kind {kind!r}")

        if not trailer_seen:
            self._problem("trailer", "the trailer is missing: the file is truncated")
        yield End(counts)

    def _check_signature(self, trailer: dict[str, Any]) -> None:
        """The trailer's MAC counts only when every checksum before it held: then it covers every byte."""
        if self.problems:
            self.provenance = Provenance(UNSIGNED, "the file is damaged or changed: its signature proves nothing")
        else:
            self.provenance = verify_trailer(trailer)
        if self.require_signature and not self.provenance.trusted:
            raise UnsignedBackup(f"This file is not signed by this installation ({self.provenance.note}); "
                                 "nothing was changed. Check where it came from, then restore it with "
                                 "--allow-unsigned (in the admin: the permission to restore unsigned backups).")

    def _start_table(self, record: dict[str, Any]) -> TableStart | None:
        name = record.get("name")
        columns = record.get("columns")
        if not isinstance(name, str) or not isinstance(columns, list) or not columns:
            self._problem("file", "a table record without a name or columns")
            return None
        try:
            names = [c["name"] for c in columns]
            families = [c["family"] for c in columns]
        except (TypeError, KeyError):
            self._problem(name, "the table's column list is malformed")
            return None
        return TableStart(name, names, families, sequence=record.get("sequence"))

    def _parse_rows(self, run: bytes, table: str, rows_before: int, width: int) -> list[list[Any]] | None:
        try:
            rows = orjson.loads(b"[" + run[:-1].replace(b"\n", b",") + b"]")
        except orjson.JSONDecodeError:
            rows = None
        if rows is not None:
            for offset, row in enumerate(rows):
                if type(row) is not list or len(row) != width:
                    found = len(row) if type(row) is list else "no"
                    self._problem(table, f"the row has {found} values, expected {width}",
                                  rows_before + offset + 1)
                    return None
            return rows
        for offset, line in enumerate(run[:-1].split(b"\n")):
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                self._problem(table, "the row is not valid JSON", rows_before + offset + 1)
                return None
        self._problem(table, "the rows are not valid JSON", rows_before + 1)
        return None

    def _file(self, record: dict[str, Any]) -> Iterator[FileRecord]:
        path = record.get("path")
        if not isinstance(path, str):
            self._problem("files", "a settings file record without a path")
            return
        if record.get("missing"):
            yield FileRecord(path, None)
            return
        if record.get("withheld") is not None:
            yield FileRecord(path, None, withheld=str(record.get("withheld"))[:500])
            return
        try:
            content = b64decode(record.get("content_b64") or "", validate=True)
        except ValueError:
            self._problem(f"file {path}", "the content is not valid base64")
            return
        if hashlib.sha256(content).hexdigest() != record.get("sha256"):
            self._problem(f"file {path}", "checksum mismatch: the file's content was changed or damaged")
            return
        yield FileRecord(path, content, record.get("sha256"), record.get("mode"))

"""Reads the native format, version 3, in one streaming pass that checks every checksum and count."""
from __future__ import annotations

import hashlib
import re
from base64 import b64decode
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from .errors import InvalidBackup, Problem, ProblemLog
from .events import End, EnvironmentRecord, Event, FileRecord, RowBatch, TableEnd, TableStart
from .header import shape_problems
from .provenance import UNSIGNED, Provenance, ProvenanceCheck, TrailerVerifier
from .values import TAG_MARK, rows_decoder
from .writer import FORMAT_NAME, FORMAT_VERSION

CHUNK_SIZE = 1 << 20
HEADER_LIMIT = 16 << 20


@dataclass(frozen=True)
class ReadLimits:
    """Bounds a reader keeps whatever the file holds. The defaults are those of the settings of the same names
    (ADCP_BACKUP_MAX_LINE_LENGTH, ADCP_BACKUP_MAX_PROBLEMS); the application passes the configured values."""

    max_line_length: int = 64 << 20  # a longer line makes the file invalid; never below CHUNK_SIZE
    max_problems: int = 100  # problems kept by a non-strict reader; the rest are counted
    line_limit_name: str = "the reader's line limit"  # how a too-long line's message names the limit


DEFAULT_LIMITS = ReadLimits()
RowsDecoder = Callable[[list[list[Any]], bool], list[list[Any]]]  # what values.rows_decoder returns


def _unverified(trailer: dict[str, Any]) -> Provenance:
    return Provenance(UNSIGNED, "no signing key was given to check its signature")
_WHITESPACE = re.compile(rb"[ \t\r\n]+")  # one character class: matched without a backtracking stack
_LINE_THAT_MAY_BE_JSON = re.compile(rb"\n[\[{ \t\r\n]")  # a line starting as a row, a record or blank
_NOT_A_ROW = re.compile(rb"\n[^\[]")


def looks_native(head: bytes) -> bool:
    stripped = head.lstrip()
    return stripped.startswith(b'{"kind":"header"') or stripped.startswith(b'{"kind": "header"')


class NativeReader:
    """``strict``: raise InvalidBackup at the first problem (restore); otherwise collect them (validate).

    ``tables``: the names of the registry's tables, which a header may name. ``verify_trailer`` checks the
    trailer's signature once every checksum before it held; its verdict is ``provenance``."""

    def __init__(self, stream: IO[bytes], *, tables: Collection[str], compression: str = "none",
                 encrypted: bool = False, strict: bool = True, limits: ReadLimits = DEFAULT_LIMITS,
                 verify_trailer: TrailerVerifier | None = None) -> None:
        self._stream = stream
        self._tables = frozenset(tables)
        self._verify_trailer = verify_trailer or _unverified
        self.compression = compression
        self.encrypted = encrypted
        self.strict = strict
        self.problems = ProblemLog(limits.max_problems)
        self.max_line_length = max(limits.max_line_length, CHUNK_SIZE)
        self._line_limit_name = limits.line_limit_name
        # Known once the trailer was read. check_provenance, when set, is told it before End is yielded and may
        # raise to stop the read: a restore refuses an unsigned file there, inside its transaction.
        self.provenance: Provenance | None = None
        self.check_provenance: ProvenanceCheck | None = None
        self._hash = hashlib.sha256()
        # The start of a line whose end has not been read yet, as the chunks it came in: joined once, when the
        # line is complete, so a long line costs one pass and one copy, not one rescan per chunk.
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._rest = b""
        self.header = self._read_header()
        version = self.header.get("version")
        self.format = f"{FORMAT_NAME} v{version}"

    # -- low level -------------------------------------------------------------------------------
    def _problem(self, section: str, message: str, row: int | None = None, count: int = 1) -> None:
        problem = Problem(section, message, row)
        if self.strict:
            raise InvalidBackup(problem)
        self.problems.add(problem, count)

    def _too_long(self, section: str, limit: int, setting: str) -> InvalidBackup:
        return InvalidBackup(Problem(section, f"a line is longer than {limit:,} bytes, the limit ({setting}); "
                                              "no backup this tool writes has such a line"))

    def _read_header(self) -> dict[str, Any]:
        parts: list[bytes] = []
        size = 0
        while True:
            chunk = self._stream.read(CHUNK_SIZE)
            if not chunk:
                line, rest = None, b""
                break
            end = chunk.find(b"\n")
            if end != -1:
                parts.append(chunk[:end])
                line, rest = b"".join(parts), chunk[end + 1:]
                break
            parts.append(chunk)
            size += len(chunk)
            if size > HEADER_LIMIT:
                raise self._too_long("header", HEADER_LIMIT, "16 MiB for the header")
        if line is None:
            if not b"".join(parts).strip():
                raise InvalidBackup(Problem("header", "the file is empty"))
            raise InvalidBackup(Problem("header", "the header line is incomplete: the file is truncated"))
        if len(line) > HEADER_LIMIT:
            raise self._too_long("header", HEADER_LIMIT, "16 MiB for the header")
        self._rest = rest  # the first bytes after the header: _blocks takes them as its first chunk
        try:
            header = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidBackup(Problem("header", f"the header is not valid JSON ({exc})")) from exc
        if not isinstance(header, dict) or header.get("kind") != "header":
            raise InvalidBackup(Problem("header", "the first line is not a backup header"))
        if header.get("format") != FORMAT_NAME:
            raise InvalidBackup(Problem("header", f"unknown format {repr(header.get('format'))[:80]}"))
        if header.get("version") != FORMAT_VERSION:
            raise InvalidBackup(
                Problem("header", f"unsupported format version {repr(header.get('version'))[:80]} "
                                  f"(this tool reads {FORMAT_VERSION})")
            )
        malformed = shape_problems(header, tables=self._tables)
        if malformed:
            # Every part of the tool reads the header (listings, plans, the admin): one of the wrong shape makes
            # the whole file invalid, whatever the rest holds.
            raise InvalidBackup([Problem("header", message) for message in malformed])
        self._hash.update(line + b"\n")
        return header

    def _blocks(self) -> Iterator[bytes]:
        """Blocks of complete lines, about CHUNK_SIZE each; what follows the last newline waits for its end.

        Each chunk is searched once, from its end, for its last newline; a line longer than the limit stops
        the reading with InvalidBackup before it is held whole."""
        limit = self.max_line_length
        first, self._rest = self._rest, b""
        while True:
            chunk, first = first or self._stream.read(CHUNK_SIZE), b""
            if not chunk:
                break
            end = chunk.rfind(b"\n")
            if end == -1:
                self._pending.append(chunk)
                self._pending_size += len(chunk)
                if self._pending_size > limit:
                    self._pending, self._pending_size = [], 0
                    raise self._too_long("file", limit, self._line_limit_name)
                continue
            if self._pending:
                if self._pending_size + chunk.find(b"\n") > limit:
                    self._pending, self._pending_size = [], 0
                    raise self._too_long("file", limit, self._line_limit_name)
                self._pending.append(chunk[: end + 1])
                block = b"".join(self._pending)
            else:
                block = chunk[: end + 1]
            rest = chunk[end + 1:]
            self._pending, self._pending_size = ([rest], len(rest)) if rest else ([], 0)
            yield block
        if self._pending:
            tail = b"".join(self._pending)
            self._pending, self._pending_size = [], 0
            yield tail  # an unterminated last line: a truncated file, reported by the parser

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
    def events(self) -> Iterator[Event]:
        table: TableStart | None = None
        table_hash = hashlib.sha256()
        decode: RowsDecoder = rows_decoder(())
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
                space = _WHITESPACE.match(block, pos)
                blank_end = block.rfind(b"\n", pos, space.end()) + 1 if space is not None else 0
                if blank_end > pos:
                    # Runs of empty lines are counted in one step: a file of nothing but newlines costs no time.
                    count = block.count(b"\n", pos, blank_end)
                    self._problem(table.name if table is not None else "file",
                                  "an empty line" if count == 1 else f"{count:,} empty lines", None, count)
                    pos = blank_end
                    continue
                if block[pos] not in b"[{ \t\r":
                    # Lines that cannot start a row or a record are counted as one run, not parsed one by one.
                    nxt = _LINE_THAT_MAY_BE_JSON.search(block, pos)
                    end = nxt.start() + 1 if nxt is not None else size
                    count = block.count(b"\n", pos, end) + (0 if block[end - 1] == 0x0A else 1)
                    self._problem(table.name if table is not None else "file",
                                  "a line is not valid JSON" if count == 1 else f"{count:,} lines are not valid JSON",
                                  rows_seen + 1 if table is not None and count == 1 else None, count)
                    pos = end
                    continue
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
                    try:
                        decode(rows, TAG_MARK in run)
                    except (ValueError, TypeError) as exc:  # base64 that is not, a tag around the wrong kind
                        self._undecodable(run, table.name, rows_seen, decode, exc)
                        rows_seen += len(rows)
                        continue
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
            self.provenance = self._verify_trailer(trailer)
        if self.check_provenance is not None:
            self.check_provenance(self.provenance)

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
        rows: list[list[Any]] | None
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

    def _undecodable(self, run: bytes, table: str, rows_before: int, decode: RowsDecoder, error: Exception) -> None:
        """Report the first row of ``run`` (rows that parse) holding a value that cannot be decoded."""
        for offset, line in enumerate(run[:-1].split(b"\n")):
            try:
                decode([orjson.loads(line)], TAG_MARK in line)
            except (ValueError, TypeError) as exc:
                self._problem(table, f"a value cannot be decoded: {exc}", rows_before + offset + 1)
                return
        self._problem(table, f"a value cannot be decoded: {error}", rows_before + 1)

    def file_records(self) -> Iterator[FileRecord]:
        """Only the settings-file records, found without parsing rows or checking checksums: the quick first
        look a restore takes before it writes anything. Every line that is not a row is parsed, as events()
        does, so no record escapes it; events() still checks everything on the real pass."""
        for block in self._blocks():
            pos, size = 0, len(block)
            while pos < size:
                end = block.find(b"\n", pos)
                end = size if end == -1 else end
                if block[pos] != 0x5B:  # "[": a row
                    try:
                        record = orjson.loads(block[pos:end])
                    except orjson.JSONDecodeError:
                        record = None
                    if isinstance(record, dict) and record.get("kind") == "file":
                        yield from self._file(record)
                    pos = end + 1
                    continue
                nxt = _NOT_A_ROW.search(block, end)  # skip the run of rows in one step
                pos = size if nxt is None else nxt.start() + 1

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
        yield FileRecord(path, content, record.get("sha256"), record.get("mode"), record.get("size"))

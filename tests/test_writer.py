"""What the native writer puts on the stream, byte for byte: the header, each table between its start and its end
(row count and SHA-256 of its row lines), settings files, the environment and the trailer (format/writer.py)."""
from __future__ import annotations

import gzip
import hashlib
import io
from typing import Any

import pytest

from adcp_backup.format.writer import FORMAT_NAME, FORMAT_VERSION, BackupWriter

COLUMNS = [{"name": "id", "family": "integer"}, {"name": "logo", "family": "blob"}]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_whole_file_line_by_line() -> None:
    out = io.BytesIO()
    writer = BackupWriter(out)
    signed: list[tuple[str, dict[str, int]]] = []

    def sign(digest: str, counts: dict[str, int]) -> dict[str, str]:
        signed.append((digest, counts))
        return {"key": "k1", "value": "sig"}

    writer.header({"created_at": "2025-03-01T12:00:00+00:00", "counts": {"tenant": 2, "product": 0}})
    writer.begin_table("tenant", COLUMNS, sequence=9)
    assert writer.rows([[1, b"ab"], [2, None]]) == 2
    assert writer.rows([]) == 0
    assert writer.rows([[3, "t"]]) == 1
    writer.end_table(sequence=9)
    writer.begin_table("product", COLUMNS[:1])
    writer.end_table()
    writer.file(path="data/a.json", content=b"{}\n", mode=0o640)
    writer.file(path="data/gone.json", content=None)
    writer.file(path=".env", content=b"SECRET=1", withheld="secrets in an unencrypted backup")
    writer.environment({"variables": {"TZ": "UTC"}})
    counts = writer.trailer(sign)

    rows = b'[1,"YWI="]\n[2,null]\n[3,{"$text":"t"}]\n'
    records = [
        b'{"kind":"header","format":"adcp-backup","version":3,"created_at":"2025-03-01T12:00:00+00:00",'
        b'"counts":{"tenant":2,"product":0}}\n',
        b'{"kind":"table","name":"tenant","columns":[{"name":"id","family":"integer"},'
        b'{"name":"logo","family":"blob"}],"sequence":9}\n',
        b'{"kind":"table_end","name":"tenant","rows":3,"sha256":"' + sha(rows).encode() + b'","sequence":9}\n',
        b'{"kind":"table","name":"product","columns":[{"name":"id","family":"integer"}]}\n',
        b'{"kind":"table_end","name":"product","rows":0,"sha256":"' + sha(b"").encode() + b'"}\n',
        b'{"kind":"file","path":"data/a.json","size":3,"mode":416,"sha256":"' + sha(b"{}\n").encode()
        + b'","content_b64":"e30K"}\n',
        b'{"kind":"file","path":"data/gone.json","missing":true}\n',
        b'{"kind":"file","path":".env","withheld":"secrets in an unencrypted backup"}\n',
        b'{"kind":"environment","variables":{"TZ":"UTC"}}\n',
    ]
    digest = sha(b"".join(records))  # every line before the trailer except the rows
    trailer = (b'{"kind":"trailer","counts":{"tenant":3,"product":0},"sha256":"' + digest.encode()
               + b'","signature":{"key":"k1","value":"sig"}}\n')
    expected = b"".join(records[:2]) + rows + b"".join(records[2:]) + trailer
    assert out.getvalue() == expected
    assert counts == {"tenant": 3, "product": 0}
    assert signed == [(digest, {"tenant": 3, "product": 0})]


def test_an_unsigned_trailer_has_no_signature_and_counts_what_the_tables_held() -> None:
    out = io.BytesIO()
    writer = BackupWriter(out)
    writer.header({})
    writer.begin_table("tenant", COLUMNS[:1])
    writer.rows([[1], [2]])
    writer.end_table()
    assert writer.trailer() == {"tenant": 2}
    head = b'{"kind":"header","format":"adcp-backup","version":3}\n'
    start = b'{"kind":"table","name":"tenant","columns":[{"name":"id","family":"integer"}]}\n'
    end = b'{"kind":"table_end","name":"tenant","rows":2,"sha256":"' + sha(b"[1]\n[2]\n").encode() + b'"}\n'
    trailer = b'{"kind":"trailer","counts":{"tenant":2},"sha256":"' + sha(head + start + end).encode() + b'"}\n'
    assert out.getvalue() == head + start + b"[1]\n[2]\n" + end + trailer


def test_the_header_record_is_the_format_and_version_then_the_header() -> None:
    assert (FORMAT_NAME, FORMAT_VERSION) == ("adcp-backup", 3)
    assert BackupWriter.header_record({"created_at": "x"}) == {"kind": "header", "format": "adcp-backup",
                                                               "version": 3, "created_at": "x"}


def test_an_empty_file_has_only_a_header_and_a_trailer() -> None:
    out = io.BytesIO()
    writer = BackupWriter(out)
    writer.header({"counts": {}})
    assert writer.trailer() == {}
    head = b'{"kind":"header","format":"adcp-backup","version":3,"counts":{}}\n'
    assert out.getvalue() == head + b'{"kind":"trailer","counts":{},"sha256":"' + sha(head).encode() + b'"}\n'


def test_the_writer_streams_into_whatever_it_is_given_a_gzip_stream_holds_the_same_bytes() -> None:
    plain, packed = io.BytesIO(), io.BytesIO()
    for stream in (plain, gzip.GzipFile(fileobj=packed, mode="wb", mtime=0)):
        writer = BackupWriter(stream)
        writer.header({"compression": "gzip"})
        writer.begin_table("tenant", COLUMNS[:1])
        writer.rows([[1]])
        writer.end_table()
        writer.trailer()
        stream.flush()
        if isinstance(stream, gzip.GzipFile):
            stream.close()
    assert gzip.decompress(packed.getvalue()) == plain.getvalue()


@pytest.mark.parametrize(("steps", "message"), [
    ([("begin_table", "a"), ("begin_table", "b")], "a table is already open"),
    ([("end_table",)], "no table is open"),
    ([("begin_table", "a"), ("trailer",)], "a table is still open"),
])
def test_tables_open_and_close_in_turn(steps: list[tuple[Any, ...]], message: str) -> None:
    writer = BackupWriter(io.BytesIO())
    writer.header({})
    *before, (last, *args) = steps
    for name, *step_args in before:
        getattr(writer, name)(*step_args, *([COLUMNS] if name == "begin_table" else []))
    with pytest.raises(AssertionError, match=f"^{message}$"):
        getattr(writer, last)(*args, *([COLUMNS] if last == "begin_table" else []))

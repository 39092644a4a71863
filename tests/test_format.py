"""The native format on its own: what goes in comes out, bit for bit, through every compression."""
from __future__ import annotations

import io
import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adcp_backup.exceptions import InvalidBackup
from adcp_backup.format import codecs
from adcp_backup.format.detect import open_reader
from adcp_backup.format.events import End, FileRecord, RowBatch, TableEnd, TableStart
from adcp_backup.format.writer import BackupWriter

COLUMNS = [
    {"name": "id", "family": "integer", "nullable": False},
    {"name": "label", "family": "text", "nullable": True},
    {"name": "price", "family": "float", "nullable": True},
    {"name": "payload", "family": "blob", "nullable": True},
    {"name": "anything", "family": "text", "nullable": True},
]

values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(),
)
rows_strategy = st.lists(
    st.tuples(
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.one_of(st.none(), st.text()),
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
        st.one_of(st.none(), st.binary(), st.text()),
        values,
    ),
    max_size=40,
)


def write_backup(rows, compression="none", batch=7) -> bytes:
    out = io.BytesIO()
    compressed = codecs.CompressedWriter(out, compression)
    writer = BackupWriter(compressed)
    writer.header({"created_at": "2025-01-01T00:00:00+00:00", "counts": {}})  # "t" is in no registry
    writer.begin_table("t", COLUMNS)
    for i in range(0, len(rows), batch):
        writer.rows(rows[i:i + batch])
    writer.end_table()
    writer.file(path="data/x.json", content=b"\x00\xffbytes", mode=0o600)
    writer.trailer()
    compressed.close()
    return out.getvalue()


def read_back(data: bytes):
    with open_reader(io.BytesIO(data), tables=(), strict=True) as reader:
        rows, files = [], []
        for event in reader.events():
            if isinstance(event, RowBatch):
                rows.extend(tuple(r) for r in event.rows)
            elif isinstance(event, FileRecord):
                files.append(event)
    return reader, rows, files


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)
    return type(a) is type(b) and a == b


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_strategy, compression=st.sampled_from(["none", "gzip", "zstd"]))
def test_any_values_round_trip_exactly(rows, compression):
    _reader, back, files = read_back(write_backup(rows, compression))
    assert len(back) == len(rows)
    for original, restored in zip(rows, back):
        assert all(same(a, b) for a, b in zip(original, restored)), (original, restored)
    assert files[0].content == b"\x00\xffbytes" and files[0].mode == 0o600


def test_events_come_in_order_with_counts_and_checksums():
    data = write_backup([(1, "a", 1.5, b"x", None), (2, None, None, None, 3)])
    with open_reader(io.BytesIO(data), tables=()) as reader:
        events = list(reader.events())
    assert isinstance(events[0], TableStart) and events[0].columns == [c["name"] for c in COLUMNS]
    assert isinstance(events[1], RowBatch) and events[1].first_row == 1
    assert isinstance(events[2], TableEnd) and events[2].rows == 2 and len(events[2].sha256) == 64
    assert isinstance(events[-1], End) and events[-1].counts == {"t": 2}


def test_negative_zero_and_extreme_floats_keep_their_bits():
    specials = [-0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, float("nan"), float("-inf")]
    rows = [(i, None, v, None, v) for i, v in enumerate(specials)]
    _reader, back, _ = read_back(write_backup(rows))
    for row, original in zip(back, specials):
        assert same(row[2], original) and same(row[4], original)


@pytest.mark.parametrize("compression,magic", [("gzip", b"\x1f\x8b"), ("zstd", b"\x28\xb5\x2f\xfd")])
def test_compression_is_detected_by_content(compression, magic):
    data = write_backup([(1, "a", 1.0, b"", "")], compression)
    assert data.startswith(magic)
    reader, _, _ = read_back(data)
    assert reader.compression == compression


def test_plain_json_lines_are_readable_by_any_tool():
    import json

    data = write_backup([(1, "é", 2.0, b"\x01", None)])
    lines = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    assert lines[0]["kind"] == "header" and lines[-1]["kind"] == "trailer"
    assert lines[2] == [1, "é", 2.0, "AQ==", None]


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda d: d[: len(d) // 2], "truncated"),
        (lambda d: d.replace(b'"kind":"trailer"', b'"kind":"trailerX"'), "unknown record kind"),
        (lambda d: d.rsplit(b"\n", 2)[0] + b"\n", "trailer is missing"),
        (lambda d: d.replace(b'"version":3', b'"version":4'), "unsupported format version 4"),
        (lambda d: b"", "empty"),
        (lambda d: b"not json at all\n", "neither the native format nor a known legacy"),
        (lambda d: d.replace(b'[2,"b"', b'[2,"c"'), "checksum mismatch"),
        (lambda d: d + b'{"kind":"table","name":"x","columns":[]}\n', "data follows the trailer"),
    ],
)
def test_damaged_files_are_refused_with_the_reason(damage, message):
    data = damage(write_backup([(1, "a", 1.0, b"", ""), (2, "b", 2.0, b"", "")]))
    with pytest.raises(InvalidBackup, match=message):
        read_back(data)


def test_garbage_behind_a_gzip_magic_is_refused():
    with pytest.raises(InvalidBackup, match="gzip"):
        read_back(b"\x1f\x8b\x08\x00" + b"garbage" * 50)


def test_a_lenient_reader_collects_every_problem_with_its_row():
    data = write_backup([(i, f"r{i}", 1.0, b"", "") for i in range(1, 6)])
    data = data.replace(b'[3,"r3"', b'[3,"rX"')
    with open_reader(io.BytesIO(data), tables=(), strict=False) as reader:
        list(reader.events())
    assert [p.section for p in reader.problems] == ["t"]
    assert "checksum" in reader.problems[0].message

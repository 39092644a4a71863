"""The value encoding of row lines, tag by tag: what each kind of value is written as, byte for byte, and what
each written form is read back as (format/values.py)."""
from __future__ import annotations

import binascii
import copy
import math
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections

from adcp_backup.dataset import BLOB, BOOLEAN, DATETIME, FLOAT, INTEGER, TEXT
from adcp_backup.format.values import row_encoder, rows_decoder
from tests.helpers import engine_aliases


class DriverDateTime(datetime):
    """A datetime subclass, as some drivers return: orjson leaves it to the encoder's fallback."""


# (families of the row, the row, its line exactly as written)
ENCODED = [
    # Plain JSON values are written as they are.
    ([INTEGER, TEXT, BOOLEAN, FLOAT], [7, "Acme", True, 1.5], b'[7,"Acme",true,1.5]'),
    ([INTEGER, TEXT, FLOAT], [None, None, None], b"[null,null,null]"),
    # Blob columns: bytes of any kind as bare base64; text that SQLite let into a blob column tagged $text.
    ([BLOB], [b"\x00\xffab"], b'["AP9hYg=="]'),
    ([BLOB], [bytearray(b"ab")], b'["YWI="]'),
    ([BLOB], [memoryview(b"ab")], b'["YWI="]'),
    ([BLOB], [b""], b'[""]'),
    ([BLOB], ["not bytes"], b'[{"$text":"not bytes"}]'),
    ([BLOB], [None], b"[null]"),
    ([INTEGER, BLOB, TEXT, BLOB], [1, b"a", "x", "t"], b'[1,"YQ==","x",{"$text":"t"}]'),
    ([BLOB, BLOB], [None, b"ab"], b'[null,"YWI="]'),
    # Bytes outside a blob column (SQLite's dynamic typing) are tagged $bytes, whatever their kind.
    ([TEXT], [b"ab"], b'[{"$bytes":"YWI="}]'),
    ([TEXT], [bytearray(b"ab")], b'[{"$bytes":"YWI="}]'),
    ([TEXT], [memoryview(b"ab")], b'[{"$bytes":"YWI="}]'),
    # Floats JSON has no number for are tagged $float.
    ([FLOAT], [float("nan")], b'[{"$float":"nan"}]'),
    ([FLOAT], [float("inf")], b'[{"$float":"inf"}]'),
    ([FLOAT], [float("-inf")], b'[{"$float":"-inf"}]'),
    ([FLOAT, FLOAT, TEXT], [float("-inf"), 2.5, None], b'[{"$float":"-inf"},2.5,null]'),
    ([TEXT, FLOAT], ["null", float("inf")], b'["null",{"$float":"inf"}]'),  # "null" in a string hides nothing
    ([FLOAT, TEXT], [-0.0, "null"], b'[-0.0,"null"]'),
    ([TEXT, FLOAT], [None, float("nan")], b'[null,{"$float":"nan"}]'),
    ([INTEGER, FLOAT], [None, 0.25], b"[null,0.25]"),
    ([TEXT, FLOAT, FLOAT], [b"ab", Decimal("1.5"), float("nan")], b'[{"$bytes":"YWI="},"1.5",{"$float":"nan"}]'),
    # NUMERIC columns (PostgreSQL and MariaDB drivers return Decimal): the exact decimal text, every digit.
    ([FLOAT], [Decimal("12.50")], b'["12.50"]'),
    ([FLOAT], [Decimal("-0.000000000000000000001")], b'["-1E-21"]'),
    ([FLOAT], [Decimal("123456789012345678901234567890.123456789")],
     b'["123456789012345678901234567890.123456789"]'),
    # Dates and times in ISO 8601, also from a driver's datetime subclass.
    ([DATETIME], [datetime(2025, 3, 1, 12, 30, 5, 120)], b'["2025-03-01T12:30:05.000120"]'),
    ([DATETIME], [DriverDateTime(2025, 3, 1, 12, 30, 5, tzinfo=UTC)], b'["2025-03-01T12:30:05+00:00"]'),
    ([DATETIME, DATETIME], [date(2025, 3, 1), time(23, 59, 1)], b'["2025-03-01","23:59:01"]'),
]


@pytest.mark.parametrize(("families", "row", "line"), ENCODED)
def test_each_kind_of_value_is_written_exactly_so(families: Any, row: Any, line: Any) -> None:
    assert row_encoder(families)(row) == line


def test_a_blob_row_is_encoded_from_a_copy_the_callers_row_is_left_alone() -> None:
    row = [b"ab", "t"]
    assert row_encoder([BLOB, BLOB])(row) == b'["YWI=",{"$text":"t"}]'
    assert row == [b"ab", "t"]


@pytest.mark.parametrize("value", [object(), {1, 2}, 1 + 2j])
def test_a_value_of_no_known_kind_is_refused_by_name(value: Any) -> None:
    with pytest.raises(TypeError) as caught:
        row_encoder([TEXT])([value])
    assert str(caught.value.__cause__) == f"cannot store a value of type {type(value).__name__}"


# (families, rows as parsed from the file, tagged, the values a restore gets)
DECODED: list[tuple[list[str], list[list[Any]], bool, list[list[Any]]]] = [
    ([BLOB], [["AP9hYg=="], [""], [None]], False, [[b"\x00\xffab"], [b""], [None]]),
    ([BLOB, TEXT], [[{"$text": "t"}, "YQ=="]], True, [["t", "YQ=="]]),  # text in a blob stays text
    ([TEXT], [[{"$bytes": "YWI="}]], True, [[b"ab"]]),
    ([TEXT], [[{"$text": "x"}]], True, [["x"]]),
    ([FLOAT, FLOAT], [[{"$float": "inf"}, {"$float": "-inf"}]], True, [[math.inf, -math.inf]]),
    ([INTEGER, TEXT], [[1, "a"], [2, "b"]], False, [[1, "a"], [2, "b"]]),
    # A one-key object whose key is no tag, or an object of two keys, is a value like any other.
    ([TEXT], [[{"$other": "x"}]], True, [[{"$other": "x"}]]),
    ([TEXT], [[{"$bytes": "YWI=", "$text": "x"}]], True, [[{"$bytes": "YWI=", "$text": "x"}]]),
    ([TEXT], [[{}]], True, [[{}]]),
    # Tags are read only in a file that says it has them.
    ([TEXT], [[{"$bytes": "YWI="}]], False, [[{"$bytes": "YWI="}]]),
    # A row shorter than the table (reported by validation) is not a crash; a longer one keeps its extra values.
    ([INTEGER, BLOB], [[1]], True, [[1]]),
    ([INTEGER], [[1, {"$bytes": "YWI="}]], True, [[1, {"$bytes": "YWI="}]]),
]


@pytest.mark.parametrize(("families", "rows", "tagged", "values"), DECODED)
def test_each_written_form_is_read_back_exactly_so(families: Any, rows: Any, tagged: Any, values: Any) -> None:
    rows = copy.deepcopy(rows)  # decoded in place: the parameters stay as written for the next run
    decoded = rows_decoder(families)(rows, tagged)
    assert decoded == values
    assert [[type(v) for v in row] for row in decoded] == [[type(v) for v in row] for row in values]
    assert decoded is rows  # in place


def test_nan_is_read_back_as_nan() -> None:
    [[value]] = rows_decoder([FLOAT])([[{"$float": "nan"}]], True)
    assert type(value) is float and math.isnan(value)


def test_text_that_sat_in_a_blob_column_comes_back_as_plain_str() -> None:
    [[value]] = rows_decoder([BLOB])([[{"$text": "YWI="}]], True)
    assert value == "YWI=" and type(value) is str  # looks like base64, and is still not decoded


@pytest.mark.parametrize("bad", ["YWI", "YW I=", "YWI=\n", "YW*=", "YWI==="])
def test_base64_is_read_strictly_in_blob_columns_and_bytes_tags(bad: Any) -> None:
    with pytest.raises(binascii.Error):
        rows_decoder([BLOB])([[bad]], False)
    with pytest.raises(binascii.Error):
        rows_decoder([TEXT])([[{"$bytes": bad}]], True)


@pytest.mark.parametrize("row", [
    [1, "Acme", True, None, 0.1 + 0.2, -0.0, 5e-324],
    [None, "", False, b"\x00" * 3, float("inf"), float("-inf"), 1.7976931348623157e308],
    [2**63 - 1, "{\"$bytes\": \"YWI=\"}", None, "text", None, 1e-10, 2.0],
])
def test_rows_round_trip_through_a_line(row: Any) -> None:
    import orjson

    families = [INTEGER, TEXT, BOOLEAN, BLOB, FLOAT, FLOAT, FLOAT]
    line = row_encoder(families)(row)
    [back] = rows_decoder(families)([orjson.loads(line)], b'{"$' in line)
    assert back == row
    assert [type(v) for v in back] == [type(v) for v in row]


def test_a_decimal_comes_back_as_its_exact_text_which_an_engine_reads_as_the_same_number() -> None:
    import orjson

    value = Decimal("98765432109876543210.0123456789")
    [[back]] = rows_decoder([FLOAT])([orjson.loads(row_encoder([FLOAT])([value]))], False)
    assert back == "98765432109876543210.0123456789"
    assert Decimal(back) == value  # no detour through a float, which would keep 17 digits


SERVER_ENGINES = [alias for alias in engine_aliases() if alias != "default"]  # SQLite has no exact NUMERIC


@pytest.mark.django_db(databases="__all__")
@pytest.mark.parametrize("alias", SERVER_ENGINES)
def test_a_numeric_from_postgresql_or_mariadb_goes_back_as_the_same_number(alias: Any) -> None:
    import orjson

    exact = "12345678901234567890.0123456789"
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT CAST('{exact}' AS DECIMAL(30, 10)), CAST('-0.5000000000' AS DECIMAL(30, 10))")
        fetched = list(cursor.fetchone())
        assert fetched == [Decimal(exact), Decimal("-0.5")] and {type(v) for v in fetched} == {Decimal}
        line = row_encoder([FLOAT, FLOAT])(fetched)
        assert line == b'["12345678901234567890.0123456789","-0.5000000000"]'
        [back] = rows_decoder([FLOAT, FLOAT])([orjson.loads(line)], False)
        cursor.execute("SELECT CAST(%s AS DECIMAL(30, 10)), CAST(%s AS DECIMAL(30, 10))", back)
        assert list(cursor.fetchone()) == fetched

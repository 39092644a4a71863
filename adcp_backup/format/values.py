"""How row values become JSON and back, column family by column family, without losing a bit."""
from __future__ import annotations

import math
from base64 import b64decode, b64encode
from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, cast

import orjson

from .families import BLOB

# Values JSON cannot carry as such are written as one-key objects: {"$bytes": b64}, {"$text": s}, {"$float": "nan"}.
TAG_MARK = b'{"$'


def _default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": b64encode(value).decode("ascii")}
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot store a value of type {type(value).__name__}")


def _special_float(value: float) -> dict[str, str]:
    return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def row_encoder(families: Sequence[str]) -> Callable[[Sequence[Any]], bytes]:
    """A function turning one database row into one JSON line (without the newline)."""
    blob_idx = [i for i, f in enumerate(families) if f == BLOB]
    dumps = orjson.dumps

    def encode(row: Sequence[Any]) -> bytes:
        values: Sequence[Any] = row
        if blob_idx:
            values = list(row)
            for i in blob_idx:
                v = values[i]
                if v is None:
                    continue
                t = type(v)
                if t is bytes or t is memoryview or t is bytearray:
                    values[i] = b64encode(v).decode("ascii")
                elif t is str:
                    values[i] = {"$text": v}
        line = dumps(values, default=_default)
        # orjson writes NaN and infinities as null. A line with no more nulls than the row has None values
        # (strings may only add some) hides none; SQLite lets a float sit in any column, so on the other
        # lines every value is looked at.
        if line.count(b"null") != values.count(None) and any(type(v) is float and v - v != 0 for v in values):
            values = [_special_float(v) if type(v) is float and v - v != 0 else v for v in values]
            line = dumps(values, default=_default)
        return line

    return encode


def _untag(value: Any) -> Any:
    if type(value) is not dict or len(value) != 1:
        return value
    (key, inner), = value.items()
    if key == "$bytes":
        return b64decode(inner, validate=True)
    if key == "$text":
        return inner
    if key == "$float":
        return float(inner)
    return value


def rows_decoder(families: Sequence[str]) -> Callable[[list[list[Any]], bool], list[list[Any]]]:
    """A function turning parsed JSON rows back into database values, in place."""
    blob_idx = [i for i, f in enumerate(families) if f == BLOB]
    width = len(families)

    def decode(rows: list[list[Any]], tagged: bool) -> list[list[Any]]:
        if tagged:
            for row in rows:
                for i in range(min(width, len(row))):
                    if type(row[i]) is dict:
                        row[i] = _untag(row[i])
                        if i in blob_idx and type(row[i]) is str:
                            row[i] = _TextInBlob(row[i])
        for i in blob_idx:
            for row in rows:
                v = row[i] if i < len(row) else None
                t = type(v)
                if t is str:
                    row[i] = b64decode(cast(str, v), validate=True)
                elif t is _TextInBlob:
                    row[i] = str(v)
        return rows

    return decode


class _TextInBlob(str):
    """Marks text that sat in a blob column (SQLite allows it) while blobs are decoded."""

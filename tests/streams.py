"""Event streams built in the test, for the functions that take a reader: no file format, no decoding layer.

``StreamReader`` has what those functions read of a reader (its header, its events once); ``database_stream``
carries the rows of a database as a whole backup of it would."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from adcp_backup import dataset
from adcp_backup.db import get_engine
from adcp_backup.exceptions import Problem
from adcp_backup.format.events import RowBatch, TableEnd, TableStart


@dataclass
class StreamReader:
    header: dict[str, Any]
    stream: list[Any]
    format: str = "adcp-backup v3"
    compression: str = "none"
    encrypted: bool = False
    problems: list[Problem] = field(default_factory=list)

    def events(self) -> Iterator[Any]:
        yield from self.stream


def table_events(name: str, columns: list[str], families: list[str], rows: list[list[Any]],
                 batch: int = 1000, sequence: int | None = None) -> list[Any]:
    """One table's events: its start, its rows in batches of ``batch``, its end (with the table's counter)."""
    events: list[Any] = [TableStart(name, columns, families, sequence=sequence)]
    for start in range(0, len(rows), batch):
        events.append(RowBatch(name, [list(r) for r in rows[start:start + batch]], start + 1))
    events.append(TableEnd(name, len(rows), sequence=sequence))
    return events


def as_read(row: Sequence[Any]) -> list[Any]:
    """A database row with its values as a reader yields them: dates and times as ISO text, binary as bytes."""
    return [value.isoformat() if isinstance(value, date) else bytes(value) if isinstance(value, memoryview)
            else value for value in row]


def database_stream(alias: str = "default", *, batch: int = 1000) -> StreamReader:
    """Every AdCP table of the database, in the registry's order, with its counter, and a header naming the tables
    and counts."""
    engine = get_engine(alias)
    tables: dict[str, list[dict[str, Any]]] = {}
    counts: dict[str, int] = {}
    stream: list[Any] = []
    for spec in dataset.tables():
        live = engine.describe(spec.name)
        columns = [c.name for c in live]
        tables[spec.name] = [{"name": c.name, "family": c.family, "nullable": c.nullable} for c in live]
        rows = [as_read(r) for rows in engine.read_rows(spec, columns, batch_size=batch) for r in rows]
        counts[spec.name] = len(rows)
        stream.extend(table_events(spec.name, columns, [c.family for c in live], rows, batch,
                                   engine.get_sequence(spec.name)))
    header = {"schema": {"engine": engine.vendor, "tables": tables}, "counts": counts}
    return StreamReader(header, stream)

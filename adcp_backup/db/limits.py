"""What each engine refuses to store: checks of row values against a target's column types, batch by batch.

A backup from one engine may hold values another cannot take: infinities and NaN (MariaDB), text longer
than a column (MariaDB's VARCHAR(n) and TEXT sizes), integers beyond a column's range, the NUL character
(PostgreSQL text), dates MariaDB's DATETIME cannot read, a row larger than MariaDB's max_allowed_packet.
Validation (``backup_validate --target-engine``) runs these checks over the whole file before anything is
written; a restore runs them on each batch before inserting it, so a refused value is named (table, row,
column) instead of surfacing as a driver error. The column types come from the live database when there is
one, otherwise from the DDL this app ships for the engine.

Each rule first looks at a whole column of a batch with C-level builtins (min, max, len, a compiled regular
expression); only a batch that may hold a refused value is looked at value by value.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import filterfalse
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ..exceptions import Problem, ValuesRefused

if TYPE_CHECKING:  # base imports this module
    from .base import Engine

ENGINES = ("sqlite", "postgresql", "mysql")
ENGINE_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB"}
DEFAULT_MAX_ALLOWED_PACKET = 16 << 20  # MariaDB's default; a restore reads the server's own value
PACKET_MARGIN = 4096  # the INSERT statement around one row
PROBLEMS_PER_COLUMN = 20

_INT_RANGES = {
    "tinyint": (-(1 << 7), (1 << 7) - 1), "smallint": (-(1 << 15), (1 << 15) - 1),
    "mediumint": (-(1 << 23), (1 << 23) - 1), "int": (-(1 << 31), (1 << 31) - 1),
    "integer": (-(1 << 31), (1 << 31) - 1), "serial": (-(1 << 31), (1 << 31) - 1),
    "bigint": (-(1 << 63), (1 << 63) - 1), "bigserial": (-(1 << 63), (1 << 63) - 1),
}
_STORED_BYTES = {"tinytext": 255, "text": 65_535, "mediumtext": 16_777_215, "longtext": 4_294_967_295,
                 "tinyblob": 255, "blob": 65_535, "mediumblob": 16_777_215, "longblob": 4_294_967_295}
_TEXTUAL = ("char", "varchar", "character", "text", "tinytext", "mediumtext", "longtext", "blob", "tinyblob",
            "mediumblob", "longblob", "binary", "varbinary", "bytea")
_SIZE = re.compile(r"\(\s*(\d+)")
# What MariaDB's DATETIME takes from a backup: "YYYY-MM-DD[ hh:mm:ss[.ffffff]]", "T" or " " between, and a UTC
# offset only as +00:00 (the restore drops it). _SURELY_DATETIME accepts all of them but 29 February.
_MARIADB_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?(?:\+00:00)?)?")
_SURELY_DATETIME = re.compile(r"\d{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
                              r"|(?:0[13578]|1[02])-31)"
                              r"(?:[ T](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?(?:\+00:00)?)?")
_COLUMN_LINE = re.compile(r"[`\"]?(\w+)[`\"]?\s+([A-Za-z]+(?:\s+(?:PRECISION|VARYING))*(?:\(\d+(?:,\s*\d+)?\))?"
                          r"(?:\s+UNSIGNED)?)")
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class Rule:
    """One check of a column: ``fits`` looks at a batch's non-NULL values at once and answers True when all
    surely pass; ``check`` names what is wrong with one value, or returns None."""

    fits: Callable[[list[Any]], bool]
    check: Callable[[Any], str | None]


def _parse(declared: str) -> tuple[str, int | None, bool]:
    """("character varying", 255, False) from "character varying(255)"; ("int", 11, True) from "int(11) unsigned"."""
    text = (declared or "").lower()
    size = _SIZE.search(text)
    base = " ".join(text.split("(", 1)[0].split())
    return base, int(size.group(1)) if size else None, "unsigned" in text


def _integer_rule(engine: str, declared: str, low: int, high: int) -> Rule:
    def check(value: Any) -> str | None:
        if type(value) is int and not low <= value <= high:
            return f"is {value}, beyond the range of {engine}'s {declared} ({low} to {high})"
        return None

    return Rule(lambda values: low <= min(values) and max(values) <= high, check)


def _finite_rule(engine: str) -> Rule:
    def check(value: Any) -> str | None:
        if type(value) is float and not math.isfinite(value):
            return f"is {value}, which {engine} cannot store (it has no infinities or NaN)"
        return None

    return Rule(lambda values: all(map(math.isfinite, values)), check)


def _characters_rule(engine: str, declared: str, limit: int) -> Rule:
    def check(value: Any) -> str | None:
        if type(value) is str and len(value) > limit:
            return f"holds {len(value)} characters, more than the {limit} of {engine}'s {declared} column"
        return None

    return Rule(lambda values: max(map(len, values)) <= limit, check)


def _bytes_rule(engine: str, declared: str, limit: int) -> Rule:
    def check(value: Any) -> str | None:
        if type(value) is str and len(value) * 4 > limit:
            size = len(value.encode("utf-8", "surrogatepass"))
        elif type(value) is bytes and len(value) > limit:
            size = len(value)
        else:
            return None
        if size > limit:
            return f"holds {size} bytes, more than the {limit} of {engine}'s {declared} column"
        return None

    return Rule(lambda values: max(map(len, values)) * 4 <= limit, check)  # UTF-8: at most 4 bytes a letter


def _nul_rule(engine: str) -> Rule:
    def check(value: Any) -> str | None:
        if type(value) is str and "\x00" in value:
            return f"holds the NUL character, which {engine} text cannot store"
        return None

    return Rule(lambda values: "\x00" not in "".join(values), check)


def _mariadb_datetime_rule(declared: str) -> Rule:
    def check(value: Any) -> str | None:
        if type(value) is not str:
            return None
        match = _MARIADB_DATETIME.fullmatch(value)
        if match is None:
            return f"is {value[:40]!r}, not a date and time MariaDB's {declared} reads (YYYY-MM-DD hh:mm:ss, UTC)"
        year, month, day = int(match.group(1)), int(match.group(2)), int(match.group(3))
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        hour = match.group(4)
        if (not 1 <= month <= 12 or not 1 <= day <= _DAYS[month - 1] or (month == 2 and day == 29 and not leap)
                or (hour is not None and (int(hour) > 23 or int(match.group(5)) > 59 or int(match.group(6)) > 59))):
            return f"is {value[:40]!r}, not a valid date and time for MariaDB's {declared}"
        return None

    def fits(values: list[Any]) -> bool:
        return all(check(value) is None for value in filterfalse(_SURELY_DATETIME.fullmatch, values))

    return Rule(fits, check)


def column_rules(engine: str, declared: str) -> list[Rule]:
    """The checks a value must pass to be stored in a column of type ``declared`` on ``engine``."""
    base, size, unsigned = _parse(declared)
    name = ENGINE_NAMES[engine]
    shown = declared.strip().upper() or "untyped"
    if engine == "sqlite":  # any value in any column, but integers are 64-bit
        return [_integer_rule(name, "INTEGER", -(1 << 63), (1 << 63) - 1)]
    first = base.split()[0] if base else ""
    if engine == "mysql" and (first in ("bool", "boolean") or (first == "tinyint" and size == 1)):
        return []
    rules: list[Rule] = []
    if first in _INT_RANGES:
        low, high = _INT_RANGES[first]
        rules.append(_integer_rule(name, shown, 0 if unsigned else low, high - low if unsigned else high))
    elif engine == "mysql" and first in ("double", "float", "real", "decimal", "numeric"):
        rules.append(_finite_rule(name))
    elif first in ("varchar", "char", "character") and size is not None:
        rules.append(_characters_rule(name, shown, size))
    elif engine == "mysql" and first in _STORED_BYTES:
        rules.append(_bytes_rule(name, shown, _STORED_BYTES[first]))
    elif engine == "mysql" and first in ("datetime", "timestamp"):
        rules.append(_mariadb_datetime_rule(shown))
    if engine == "postgresql" and first in ("varchar", "char", "character", "text"):
        rules.append(_nul_rule(name))
    return rules


@dataclass
class _Column:
    index: int
    name: str
    rules: list[Rule]


class ValueLimits:
    """Checks batches of one table's rows, in the file's column order, against a target engine's columns."""

    def __init__(self, engine: str, table: str, columns: Sequence[str], declared: Mapping[str, str], *,
                 max_row_bytes: int | None = None) -> None:
        self.engine = engine
        self.table = table
        checked = (_Column(i, name, column_rules(engine, declared[name])) for i, name in enumerate(columns)
                   if name in declared)
        self.columns = [column for column in checked if column.rules]
        self.max_row_bytes = max_row_bytes
        self.textual = [i for i, name in enumerate(columns)
                        if _parse(declared.get(name, "text"))[0].split(" ")[0] in _TEXTUAL]

    def __bool__(self) -> bool:
        return bool(self.columns) or self.max_row_bytes is not None

    def check(self, rows: Sequence[Sequence[Any]], first_row: int) -> list[Problem]:
        """One problem per refused value (at most 20 per column and batch), with its row number in the file."""
        problems: list[Problem] = []
        for column in self.columns:
            values = list(map(itemgetter(column.index), rows))
            if _all_fit(column.rules, values):
                continue
            found = 0
            for k, value in enumerate(values):
                message = next((m for m in (rule.check(value) for rule in column.rules) if m is not None), None)
                if message is not None:
                    problems.append(Problem(self.table, f"{column.name} {message}", first_row + k))
                    found += 1
                    if found >= PROBLEMS_PER_COLUMN:
                        break
        if self.max_row_bytes is not None and rows:
            problems.extend(self._oversized_rows(rows, first_row))
        return problems

    def _oversized_rows(self, rows: Sequence[Sequence[Any]], first_row: int) -> list[Problem]:
        assert self.max_row_bytes is not None
        limit = self.max_row_bytes - PACKET_MARGIN
        try:  # escaping may double a value and UTF-8 takes up to 4 bytes a letter: 8x the longest values is safe
            if sum(max(map(len, filter(None, map(itemgetter(i), rows))), default=0) for i in self.textual) * 8 <= limit:
                return []
        except TypeError:
            pass
        problems = []
        for k, row in enumerate(rows):
            size = sum(len(v.encode("utf-8", "surrogatepass")) if type(v) is str else len(v)
                       for v in row if type(v) is str or type(v) is bytes)
            if size * 2 > limit:
                problems.append(Problem(self.table, f"the row holds {size} bytes of text and binary data, more "
                                        f"than {ENGINE_NAMES[self.engine]}'s max_allowed_packet "
                                        f"({self.max_row_bytes} bytes) lets one INSERT carry", first_row + k))
                if len(problems) >= PROBLEMS_PER_COLUMN:
                    break
        return problems


def _all_fit(rules: Sequence[Rule], values: list[Any]) -> bool:
    """Whether every value of a batch's column surely passes; False means "look at each value"."""
    present = [v for v in values if v is not None] if None in values else values
    if not present:
        return True
    try:
        return all(rule.fits(present) for rule in rules)
    except (TypeError, ValueError):  # a value of the wrong type: looked at one by one (validation names it)
        return False


def shipped_types(engine: str) -> dict[str, dict[str, str]]:
    """table -> column -> declared type, read from the DDL this app ships for ``engine``."""
    from .base import shipped_ddl

    types: dict[str, dict[str, str]] = {}
    for statement in shipped_ddl(engine):
        head = re.match(r"\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[`\"]?(\w+)[`\"]?\s*\(", statement,
                        re.IGNORECASE)
        if head is None:
            continue
        columns: dict[str, str] = {}
        for line in statement[head.end():].splitlines():
            match = _COLUMN_LINE.match(line.strip())
            if match is None or match.group(1).upper() in ("PRIMARY", "UNIQUE", "INDEX", "KEY", "FOREIGN",
                                                            "CONSTRAINT", "CHECK"):
                continue
            columns[match.group(1)] = match.group(2)
        types[head.group(1)] = columns
    return types


def for_target(engine: str, table: str, columns: Sequence[str], *,
               live: Engine | None = None) -> ValueLimits | None:
    """The checks for restoring ``columns`` of ``table`` into ``engine``: with the live database's column types
    when ``live`` (an Engine) is that engine and has the table, else with those of the DDL shipped for it."""
    if live is not None and live.vendor == engine and table in live.existing_tables():
        return live.value_limits(table, columns)
    found = ValueLimits(engine, table, columns, shipped_types(engine).get(table, {}),
                        max_row_bytes=DEFAULT_MAX_ALLOWED_PACKET if engine == "mysql" else None)
    return found or None


def refused(problems: list[Problem], engine: str) -> ValuesRefused:
    """Values the target refused during a restore: one sentence naming the first (table, row, column)."""
    first = problems[0]
    where = f"{first.section} row {first.row}" if first.row is not None else first.section
    return ValuesRefused(
        f"{ENGINE_NAMES.get(engine, engine)} cannot store a value of {where}: {first.message}; the restore was "
        f"rolled back and the database is unchanged (backup_validate FILE --target-engine {engine} lists every "
        "such value).", problems)


def every_refusal(problems: list[Problem], engine: str, *, total: int) -> ValuesRefused:
    """Every value the target cannot store, as a dry run reports them: one sentence, each value named."""
    shown = "; ".join(str(p) for p in problems)
    more = f" (and {total - len(problems)} more)" if total > len(problems) else ""
    return ValuesRefused(f"{ENGINE_NAMES.get(engine, engine)} cannot store {total} value(s) of the backup, so the "
                         f"restore would fail; nothing was changed: {shown}{more}.", problems)

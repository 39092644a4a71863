"""Column families, and the layout of a table as the format layer sees it: names and families, no Django.

The families are the engine-neutral kinds of value the format and the engines agree on. The table registry
(``adcp_backup.dataset``) builds its columns from the models with these families; its tables satisfy
``TableLayout``, which is all a reader needs to know of them."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

INTEGER, FLOAT, TEXT, BOOLEAN, DATETIME, BLOB = "integer", "float", "text", "boolean", "datetime", "blob"
FAMILIES = (INTEGER, FLOAT, TEXT, BOOLEAN, DATETIME, BLOB)


class ColumnLayout(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def family(self) -> str: ...

    @property
    def nullable(self) -> bool: ...


class TableLayout(Protocol):
    """A table of the registry: its name and its columns, in the order a backup writes them."""

    @property
    def name(self) -> str: ...

    @property
    def columns(self) -> Sequence[ColumnLayout]: ...

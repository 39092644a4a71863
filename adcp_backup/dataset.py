"""The table registry: which tables a backup holds, in which order, with their columns, keys and scope.

Everything else asks this module about tables; adding a table is one model plus one entry in TABLES.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from django.db import models as dj_models

from . import models
from .format.families import BLOB as BLOB
from .format.families import BOOLEAN as BOOLEAN
from .format.families import DATETIME as DATETIME
from .format.families import FLOAT as FLOAT
from .format.families import INTEGER as INTEGER
from .format.families import TEXT as TEXT

_FAMILY_BY_INTERNAL_TYPE = {
    "AutoField": INTEGER,
    "BigAutoField": INTEGER,
    "IntegerField": INTEGER,
    "BigIntegerField": INTEGER,
    "SmallIntegerField": INTEGER,
    "ForeignKey": INTEGER,
    "FloatField": FLOAT,
    "CharField": TEXT,
    "TextField": TEXT,
    "BooleanField": BOOLEAN,
    "DateTimeField": DATETIME,
    "BinaryField": BLOB,
}


@dataclass(frozen=True)
class Column:
    name: str
    family: str
    nullable: bool
    default: Any = None
    has_default: bool = False


@dataclass(frozen=True)
class ForeignKey:
    column: str
    table: str
    ref_column: str = "id"


@dataclass(frozen=True)
class TableSpec:
    name: str
    model: type[dj_models.Model]
    columns: tuple[Column, ...]
    primary_key: str = "id"
    unique: tuple[tuple[str, ...], ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    # How a row belongs to a tenant: None for global tables, else (column, parent table) up to tenant.
    tenant_link: tuple[str, str] | None = None

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def is_global(self) -> bool:
        return self.tenant_link is None and self.name != "tenant"


def _columns(model: type[dj_models.Model]) -> tuple[Column, ...]:
    columns = []
    for f in model._meta.concrete_fields:
        family = _FAMILY_BY_INTERNAL_TYPE[f.get_internal_type()]
        has_default = f.has_default()
        columns.append(
            Column(
                name=str(f.column),
                family=family,
                nullable=f.null,
                default=f.get_default() if has_default else None,
                has_default=has_default,
            )
        )
    return tuple(columns)


def _unique(model: type[dj_models.Model]) -> tuple[tuple[str, ...], ...]:
    keys: list[tuple[str, ...]] = []
    for f in model._meta.concrete_fields:
        if f.unique and not f.primary_key:
            keys.append((str(f.column),))
    for constraint in model._meta.constraints:
        if isinstance(constraint, dj_models.UniqueConstraint):
            fields = [cast("dj_models.Field[Any, Any]", model._meta.get_field(name)) for name in constraint.fields]
            keys.append(tuple(str(f.column) for f in fields))
    return tuple(keys)


def _foreign_keys(model: type[dj_models.Model]) -> tuple[ForeignKey, ...]:
    keys = []
    for f in model._meta.concrete_fields:
        if isinstance(f, dj_models.ForeignKey):
            parent = f.related_model
            keys.append(ForeignKey(str(f.column), parent._meta.db_table, str(f.target_field.column)))
    return tuple(keys)


def _spec(model: type[dj_models.Model], *, tenant_link: tuple[str, str] | None) -> TableSpec:
    return TableSpec(
        name=model._meta.db_table,
        model=model,
        columns=_columns(model),
        unique=_unique(model),
        foreign_keys=_foreign_keys(model),
        tenant_link=tenant_link,
    )


@cache
def tables() -> tuple[TableSpec, ...]:
    """All tables in restore order: parents before children. Delete in the reverse order."""
    return (
        _spec(models.Tenant, tenant_link=None),
        _spec(models.Product, tenant_link=("tenant_id", "tenant")),
        _spec(models.ExternalAgent, tenant_link=None),
        _spec(models.ProductEmbedding, tenant_link=("product_id", "product")),
    )


def table(name: str) -> TableSpec:
    for spec in tables():
        if spec.name == name:
            return spec
    raise KeyError(name)


def table_names() -> list[str]:
    return [spec.name for spec in tables()]


# The SQLite full-text index over product names and descriptions: derived data, rebuilt on restore.
FTS_TABLE = "products_fts"
FTS_SOURCE_TABLE = "product"

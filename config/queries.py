"""A SELECT the ORM need not compile, for the few lookups made with every booking (its resource,
its client's webhook endpoints, the fraud deny list).

Building and compiling a queryset costs about 0.2 ms of CPU each time: more than the round trip
of a lookup by an indexed key. `select()` writes the same SELECT from the model's own metadata
and runs it through the manager's `raw()`, so that the rows are the model's instances with every
field's converters applied, on PostgreSQL and SQLite alike (docs/performance.md, "2026-12-07,
11:00").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Model
from django.db.models.query import RawQuerySet

M = TypeVar("M", bound=Model)


def select(
    model: type[M], where: str, params: Sequence[Any], *, fields: Sequence[str] = ()
) -> RawQuerySet[M]:
    """`SELECT <fields> FROM <model's table> WHERE <where>`, through `model`'s `raw()`.

    `where` names fields in braces (`"{code} = %s AND {active}"`), which become their quoted
    columns; every value is a `%s` parameter in `params`, prepared by the caller for the
    database (a foreign key's field `get_db_prep_value`, say). `fields`: the fields to load (the
    primary key is always loaded; the others are deferred); all of them by default."""
    meta, quote = model._meta, connection.ops.quote_name
    columns = {f.name: quote(f.column) for f in meta.concrete_fields if f.column}
    loaded = (
        [meta.pk.name, *(name for name in fields if name != meta.pk.name)] if fields else columns
    )
    sql = (
        f"SELECT {', '.join(columns[name] for name in loaded)}"  # noqa: S608  # nosec B608
        f" FROM {quote(meta.db_table)} WHERE {where.format(**columns)}"
    )
    return model._default_manager.raw(sql, params)

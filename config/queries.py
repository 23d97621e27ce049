"""A SELECT the ORM need not compile, for the few lookups made with every booking (its resource,
its client's webhook endpoints, the fraud deny list).

Building and compiling a queryset costs about 0.2 ms of CPU each time: more than the round trip
of a lookup by an indexed key. `select()` writes the SELECT from the model's own metadata (in
about 0.01 ms) and runs it through the manager's `raw()`, so that the rows are the model's
instances with every field's converters applied, on PostgreSQL and SQLite alike
(docs/performance.md, "2026-12-07, 10:30-10:45 UTC").

Unlike a queryset it applies no `Meta.ordering`, no LIMIT and no filtering of a custom
manager's `get_queryset()`: what the caller writes is what runs. Use it where a lookup's CPU
matters; a queryset everywhere else.
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

    `where` is a literal of the caller's source, never built from input: it names fields (by
    name: `owner`, not `owner_id`) in braces, which become their quoted columns
    (`"{code} = %s AND {active}"`), and may end with an ORDER BY; a literal brace is written
    `{{`, a literal percent sign `%%`. Every value is a `%s` parameter in `params`, prepared by
    the caller for the database (a foreign key's `get_db_prep_value`, say). `fields`: the
    fields to load (the primary key always is; the others are deferred); all by default."""
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

"""The read a worker starts each message with: an attempt, its saga and the saga's targets, in
one SELECT whose SQL is built once per process.

`SagaStep.objects.select_related("saga", "saga__booking").filter(pk=...)` gives the same objects,
but Django compiles that query again on every call, which cost about a third of the read's time
in the worker's profile. Here the statement and the column converters are prepared on first use
(per database connection and set of target relations) and each call only runs it and
builds the objects, with the related-object caches set as select_related sets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import connections
from django.db.models import Model
from django.db.models.expressions import Col

from .models import Saga, SagaStep


@dataclass(frozen=True)
class _Part:
    model: type[Model]
    attnames: tuple[str, ...]
    start: int
    end: int
    converters: tuple[tuple[int, tuple[Any, ...], Col], ...]  # (column, converters, expression)
    relation: Any  # how it hangs off the saga: a field or a reverse relation (None: the attempt,
    # the saga)


@dataclass(frozen=True)
class _Plan:
    sql: str
    parts: tuple[_Part, ...]


@cache
def _plan(connection: Any, relations: tuple[str, ...]) -> _Plan:
    """Per connection object (one per thread and alias): the backend's converters are its."""
    qn = connection.ops.quote_name
    # Any: the stubs type fields, relations and columns as unions (or None) these models never hit
    step_meta: Any = SagaStep._meta
    saga_meta: Any = Saga._meta
    saga_fk = step_meta.get_field("saga")
    sources: list[tuple[type[Model], str, Any]] = [(SagaStep, "a", None), (Saga, "s", None)]
    joins = [
        f"FROM {qn(step_meta.db_table)} a INNER JOIN {qn(saga_meta.db_table)} s "
        f"ON s.{qn(saga_meta.pk.column)} = a.{qn(saga_fk.column)}"
    ]
    for i, name in enumerate(relations):
        relation: Any = saga_meta.get_field(name)
        model: Any = relation.related_model
        alias_ = f"t{i}"
        if relation.concrete:  # a foreign key on the saga
            on = f"{alias_}.{qn(model._meta.pk.column)} = s.{qn(relation.column)}"
        else:  # a one-to-one field on the target pointing at its saga
            remote = relation.field
            on = f"{alias_}.{qn(remote.column)} = s.{qn(remote.target_field.column)}"
        joins.append(f"LEFT OUTER JOIN {qn(model._meta.db_table)} {alias_} ON {on}")
        sources.append((model, alias_, relation))
    columns: list[str] = []
    parts = []
    for source, table_alias, relation in sources:
        fields: Any = source._meta.concrete_fields
        start = len(columns)
        converters = []
        for offset, f in enumerate(fields):
            col = f.get_col(table_alias)
            found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            if found:
                converters.append((start + offset, tuple(found), col))
            columns.append(f"{table_alias}.{qn(f.column)}")
        attnames = tuple(f.attname for f in fields)
        parts.append(_Part(source, attnames, start, len(columns), tuple(converters), relation))
    where = f"WHERE a.{qn(step_meta.pk.column)} = %s"
    sql = f"SELECT {', '.join(columns)} {' '.join(joins)} {where}"  # nosec B608
    return _Plan(sql, tuple(parts))


def attempt_with_saga(pk: int, relations: tuple[str, ...], using: str = "default") -> Any:
    """The SagaStep `pk` with its saga (and the saga's `relations`) loaded, or None."""
    connection = connections[using]
    plan = _plan(connection, relations)
    with connection.cursor() as cursor:
        cursor.execute(plan.sql, [pk])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, converters, col in (c for part in plan.parts for c in part.converters):
        for convert in converters:
            values[index] = convert(values[index], col, connection)
    step_part, saga_part, *targets = plan.parts
    step = SagaStep.from_db(using, step_part.attnames, values[step_part.start : step_part.end])
    saga = Saga.from_db(using, saga_part.attnames, values[saga_part.start : saga_part.end])
    saga_fk: Any = SagaStep._meta.get_field("saga")
    saga_fk.set_cached_value(step, saga)
    for part in targets:
        chunk = values[part.start : part.end]
        meta: Any = part.model._meta
        pk_index = part.attnames.index(meta.pk.attname)
        target = None
        if chunk[pk_index] is not None:
            target = part.model.from_db(using, part.attnames, chunk)
        part.relation.set_cached_value(saga, target)
        if target is not None and not part.relation.concrete:
            part.relation.field.set_cached_value(target, saga)
    return step

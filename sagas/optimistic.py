"""The engine's one-statement write of a successful action (PostgreSQL only).

The locked path records an outcome in one transaction of eight round trips: BEGIN, lock the
saga, lock the target, update the attempt, insert the next attempt, update the target, update
the saga, COMMIT. For the common case, an action that succeeded while nobody else touched the
saga, `write` sends all of it as one statement of data-modifying CTEs, in autocommit:

    WITH saga AS (UPDATE saga ... WHERE id = .. AND version = <read>),          -- the gate
         attempt AS (UPDATE attempt ... FROM saga WHERE id = .. AND status = 'scheduled'),
         target AS (UPDATE target SET <changed> FROM attempt WHERE id = ..
                    AND <each changed column> IS NOT DISTINCT FROM <its value as read>),
         next AS (INSERT INTO attempt ... SELECT .. FROM target RETURNING id)
    SELECT 1 / (SELECT count(*) FROM target), (SELECT id FROM next)

Each write runs only if the one before it wrote its row (the FROM), so the saga is written only
at the version read and the attempt only while still scheduled. If any of them wrote nothing,
the division by zero aborts the statement, and with it every write it made: all or nothing,
and the caller takes the locked path, which reads everything again. A concurrent writer of the
saga (a cancel, an operator, a second copy of the attempt) holds its row lock or has raised its
version, so the gate sees it: PostgreSQL re-checks `version = <read>` on the latest row version
once the other transaction ends.
"""

from __future__ import annotations

import copy
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.db import DataError, IntegrityError, connection
from django.db.models import (
    BooleanField,
    CharField,
    DateTimeField,
    Field,
    IntegerField,
    Model,
    TextField,
)

# Identifiers in the SQL below come from the models' metadata, never from input; every value is
# a query parameter.


def available() -> bool:
    """Whether `write` may be used now: PostgreSQL, and no transaction open (the statement is
    its own transaction; inside an outer one its abort would spoil the caller's)."""
    return (
        settings.SAGA_ONE_STATEMENT_RECORD
        and connection.vendor == "postgresql"
        and not connection.in_atomic_block
    )


@cache
def _columns(model: type[Model]) -> tuple[Field, ...]:
    """The model's columns but its primary key."""
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


@cache
def _field(model: type[Model], name: str) -> Field:
    return next(f for f in model._meta.concrete_fields if name in (f.name, f.attname))


def snapshot(obj: Model, names: Any = None) -> dict[str, Any]:
    """The object's column values as they are now (as read or as last written)."""
    fields = _columns(type(obj))
    if names is not None:
        fields = tuple(_field(type(obj), n) for n in names)
    out = {}
    for f in fields:
        value = getattr(obj, f.attname)
        out[f.attname] = copy.deepcopy(value) if isinstance(value, dict | list) else value
    return out


def _changed(obj: Model, before: dict[str, Any]) -> list[tuple[Field, Any]]:
    """(field, new value) for each column in `before` that changed, auto_now columns included."""
    out = []
    for f in _columns(type(obj)):
        if f.attname not in before:
            continue
        value = f.pre_save(obj, False)  # sets auto_now fields, as Model.save would
        if value != before[f.attname]:
            out.append((f, value))
    return out


@cache
def _q(name: str | None) -> str:
    assert name, "a column or table name"
    return connection.ops.quote_name(name)


@cache
def _insert_parts(model: type[Model], with_pk: bool) -> tuple[tuple[Field, ...], str, str]:
    """The columns an INSERT of `model` writes (its primary key too `with_pk`), and the SQL
    around the optional FROM: built once per model, the same for every row."""
    meta = model._meta
    assert meta.pk is not None
    fields = tuple(f for f in meta.concrete_fields if with_pk or not f.primary_key)
    columns = ", ".join(_q(f.column) for f in fields)
    values = ", ".join(f"CAST(%s AS {f.db_type(connection)})" for f in fields)
    head = f"INSERT INTO {_q(meta.db_table)} ({columns}) SELECT {values}"  # nosec B608
    return fields, head, f" RETURNING {_q(meta.pk.column)}"


def _db_value(f: Field, value: Any) -> Any:
    """What the driver is given for `value` in column `f`: as Model.save would send it (the
    common plain types go as they are; anything else through the field's own conversion)."""
    kind = type(value)
    if kind is str and isinstance(f, CharField | TextField):
        return value
    if kind is int and isinstance(f, IntegerField):
        return value
    if kind is bool and isinstance(f, BooleanField):
        return value
    if kind is datetime and value.tzinfo is not None and isinstance(f, DateTimeField):
        return value
    return f.get_db_prep_save(value, connection)


class _Statement:
    """The CTEs of one statement and their parameters, in order."""

    def __init__(self) -> None:
        self.ctes: list[str] = []
        self.params: list[Any] = []

    def update(
        self,
        name: str,
        obj: Model,
        sets: list[tuple[Field, Any]],
        guards: list[tuple[Field, Any, str]],
        after: str = "",
    ) -> None:
        """A CTE `name` updating obj's row, only if each guard (field, value, operator) holds
        and, with `after`, only if the CTE `after` returned its row."""
        table = _q(obj._meta.db_table)
        pk = obj._meta.pk
        assert pk is not None
        assignments = []
        for f, value in sets:
            assignments.append(f"{_q(f.column)} = %s")
            self.params.append(_db_value(f, value))
        where = [f"{table}.{_q(pk.column)} = %s"]
        self.params.append(pk.get_db_prep_value(obj.pk, connection))
        for f, value, op in guards:
            where.append(f"{table}.{_q(f.column)} {op} %s")
            self.params.append(_db_value(f, value))
        source = f" FROM {after}" if after else ""
        self.ctes.append(
            f"{name} AS (UPDATE {table} SET {', '.join(assignments)}{source} "  # noqa: S608  # nosec B608
            f"WHERE {' AND '.join(where)} RETURNING 1 AS ok)"
        )

    def insert(self, name: str, obj: Model, after: str = "") -> None:
        """A CTE `name` inserting obj with every column, its primary key too when it has one
        already (a UUID made in Python), returning the primary key; with `after`, only if that
        CTE returned its row."""
        fields, head, tail = _insert_parts(type(obj), obj.pk is not None)
        for f in fields:
            self.params.append(_db_value(f, f.pre_save(obj, True)))
        source = f" FROM {after}" if after else ""
        self.ctes.append(f"{name} AS ({head}{source}{tail})")

    def sql(self, select: str) -> str:
        return f"WITH {', '.join(self.ctes)} {select}"


def write(
    *,
    saga: tuple[Any, dict[str, Any]],
    outcome: tuple[Model, tuple[str, ...]],
    target: tuple[Model, dict[str, Any]],
    new_attempt: Model | None,
) -> bool:
    """Write the saga (its changed fields, a new version), the attempt's outcome fields, the
    target's changed fields and the new attempt, all or nothing. True if written (the saga's
    version and the new attempt's id are then set on the objects), False on a conflict."""
    saga_obj, saga_before = saga
    row, outcome_fields = outcome
    target_obj, target_before = target
    statement = _Statement()
    saga_model: type[Model] = type(saga_obj)
    version = _field(saga_model, "version")
    statement.update(
        "saga",
        saga_obj,
        [*_changed(saga_obj, saga_before), (version, saga_obj.version + 1)],
        [(version, saga_obj.version, "=")],
    )
    attempt = type(row)
    statement.update(
        "attempt",
        row,
        [(_field(attempt, n), getattr(row, n)) for n in outcome_fields],
        [(_field(attempt, "status"), "scheduled", "=")],
        after="saga",
    )
    last = "attempt"
    target_sets = _changed(target_obj, target_before)
    if target_sets:
        guards = [(f, target_before[f.attname], "IS NOT DISTINCT FROM") for f, _ in target_sets]
        statement.update("target", target_obj, target_sets, guards, after=last)
        last = "target"
    select = f"SELECT 1 / (SELECT count(*) FROM {last})::int"  # noqa: S608  # nosec B608
    if new_attempt is not None:
        statement.insert("next", new_attempt, after=last)
        select += ", (SELECT * FROM next)"
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement.sql(select), statement.params)
            written = cursor.fetchone()
    except (DataError, IntegrityError):
        return False
    saga_obj.version += 1
    if new_attempt is not None:
        new_attempt.pk = written[1]
        _mark_saved(new_attempt)
    _mark_saved(target_obj)
    return True


def insert_all(objects: list[Model]) -> None:
    """Insert new objects in one statement, each only after the one before it (so all or
    nothing, like a transaction of one round trip instead of five); the primary keys the
    database generated are set on the objects, and every object is marked as saved. The
    foreign keys between them are checked at the end of the statement, when every row is
    there. A unique violation raises IntegrityError, and nothing is written."""
    statement = _Statement()
    previous = ""
    for i, obj in enumerate(objects):
        statement.insert(f"new{i}", obj, after=previous)
        previous = f"new{i}"
    each = ", ".join(f"(SELECT * FROM new{i})" for i in range(len(objects)))  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(statement.sql(f"SELECT {each}"), statement.params)  # nosec B608
        pks = cursor.fetchone()
    for obj, pk in zip(objects, pks, strict=True):
        if obj.pk is None:
            obj.pk = pk
        _mark_saved(obj)


def _mark_saved(obj: Model) -> None:
    """What Model.save leaves on an object it inserted or updated: saved, in this database;
    and (models with django-fsm's ConcurrentTransitionMixin) the state written remembered as
    the one to check on the next save, as that mixin's save() does."""
    obj._state.adding = False
    obj._state.db = connection.alias
    remember_state = getattr(obj, "_update_initial_state", None)
    if remember_state is not None:
        remember_state()

"""Where the engine's decisions are written: one interface, two stores.

A `Change` is a decision applied to rows in memory: the saga (read at some version), the
attempt whose outcome it records, the saga's target with the values it had when read, and the
new rows (the next attempt, the saga's events, the target's outbox rows). A store writes it all
or nothing, and only if nobody changed those rows since they were read:

- the saga only at the version read (and its version goes up by one);
- the attempt only while it is still scheduled (a second copy of it recorded nothing yet);
- the target's changed columns only where they still hold the values read.

Otherwise it writes nothing and answers False; the engine reads again and decides again. So no
lock is held while a decision is made, and a cancel, an operator or a second copy of the
attempt that wrote meanwhile always wins cleanly.

- `OrmStore`, the reference and the default everywhere: conditional UPDATEs and INSERTs through
  the ORM in one transaction (savepoint inside an outer one), rolled back if any row count is
  not the one expected; the attempt a worker runs read with select_related.
- `PostgresStore`, an accelerator for PostgreSQL: the same writes as one statement of
  data-modifying CTEs in autocommit, one round trip instead of seven (see `_Statement`); the
  same read as a SELECT written once (see `_Reader`). The contract tests
  (tests/sagas/test_store.py) run every case against both where the database is PostgreSQL
  (`make test`), and against the ORM store on SQLite.

Rows written here are written with UPDATE and INSERT, not Model.save(): no save() signals,
and an object carries the values written (and its new primary key).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import (
    BooleanField,
    CharField,
    DateTimeField,
    Field,
    ForeignKey,
    IntegerField,
    Model,
    OneToOneRel,
    TextField,
)

from .definition import target_relations
from .models import Saga, SagaStep

OUTCOME_FIELDS = (
    "status",
    "started_at",
    "finished_at",
    "task_id",
    "worker",
    "response",
    "error",
    "error_code",
    "outcome_unknown",
    "scheduled_for",
    "lease_expires_at",
)


@dataclass
class Change:
    """A decision applied in memory, to be written all or nothing."""

    saga: Saga
    saga_before: dict[str, Any]  # snapshot() of the saga as read
    attempt: SagaStep
    target: Model | None = None
    target_before: dict[str, Any] = field(default_factory=dict)  # snapshot() of the target
    new: list[Model] = field(default_factory=list)


class _Conflict(Exception):
    """A row was changed since it was read: write nothing."""


def current() -> OrmStore:
    """The store for the default database: PostgresStore on PostgreSQL unless
    SAGA_ONE_STATEMENT_RECORD is off, else OrmStore."""
    if settings.SAGA_ONE_STATEMENT_RECORD and connection.vendor == "postgresql":
        return PostgresStore()
    return OrmStore()


class OrmStore:
    """The reference store: an ORM query, and plain ORM writes in a transaction."""

    def read(self, step_id: int) -> SagaStep | None:
        """The attempt with its saga, the saga's target and the target's relations
        (`target_relations()`), in one query; None if there is no such attempt."""
        related = ["saga", *(f"saga__{name}" for name in target_relations())]
        try:
            return SagaStep.objects.select_related(*related).get(pk=step_id)
        except SagaStep.DoesNotExist:
            return None

    def insert(self, rows: Sequence[Model]) -> None:
        """Insert new rows, in order, all or nothing (a unique violation raises IntegrityError
        and writes none of them). Generated primary keys are set on the objects."""
        with transaction.atomic():
            for obj in rows:
                type(obj)._default_manager.bulk_create([obj])

    def commit(self, change: Change) -> bool:
        """Write the change if nobody changed its rows since they were read. True if written
        (the saga's version is then one higher), False if not (nothing was written)."""
        saga, row, target = change.saga, change.attempt, change.target
        version = change.saga_before["version"]
        try:
            with transaction.atomic():
                sets = {f.attname: value for f, value in _changed(saga, change.saga_before)}
                sets["version"] = version + 1
                if not Saga.objects.filter(pk=saga.pk, version=version).update(**sets):
                    raise _Conflict
                outcome = {name: getattr(row, name) for name in OUTCOME_FIELDS}
                scheduled = SagaStep.Status.SCHEDULED
                if not SagaStep.objects.filter(pk=row.pk, status=scheduled).update(**outcome):
                    raise _Conflict
                if target is not None:
                    target_sets = _changed(target, change.target_before)
                    if target_sets and not _guarded(target, change.target_before, target_sets):
                        raise _Conflict
                for obj in change.new:
                    type(obj)._default_manager.bulk_create([obj])
        except (_Conflict, IntegrityError):
            return False
        _written(change)
        return True


class PostgresStore(OrmStore):
    """The same read without the ORM's compiling, and the same writes, each as one statement
    on PostgreSQL."""

    def read(self, step_id: int) -> SagaStep | None:
        """The same rows as OrmStore.read, by the same joins, with a SELECT written from the
        models' metadata once per process and set of target relations (`_Reader`): compiling
        the ORM's select_related of four models each time cost about 1.4 ms of the read's
        1.9 ms of CPU (docs/performance.md)."""
        return _reader(tuple(target_relations())).read(step_id)

    def insert(self, rows: Sequence[Model]) -> None:
        statement = _Statement()
        previous = ""
        for i, obj in enumerate(rows):
            statement.insert(f"new{i}", obj, after=previous)
            previous = f"new{i}"
        each = ", ".join(f"(SELECT * FROM new{i})" for i in range(len(rows)))  # noqa: S608  # nosec B608
        with _own_transaction(), connection.cursor() as cursor:
            cursor.execute(statement.sql(f"SELECT {each}"), statement.params)  # nosec B608
            pks = cursor.fetchone()
        for obj, pk in zip(rows, pks, strict=True):
            obj.pk = pk
            _saved(obj)

    def commit(self, change: Change) -> bool:
        """One statement:

            WITH saga AS (UPDATE saga ... WHERE id = .. AND version = <read> RETURNING 1),
                 attempt AS (UPDATE attempt ... FROM saga WHERE id = .. AND status = 'scheduled'),
                 target AS (UPDATE target SET <changed> FROM attempt WHERE id = ..
                            AND <each changed column> IS NOT DISTINCT FROM <its value as read>),
                 new0 AS (INSERT INTO ... SELECT .. FROM target RETURNING id), new1 ...
            SELECT 1 / (SELECT count(*) FROM target), (SELECT * FROM new0), ...

        Each write runs only if the one before it wrote its row (the FROM). If one of the
        updates wrote nothing, 1 / 0 aborts the statement, and with it every write it made:
        SQL has no other way to undo a statement's earlier writes from within it. PostgreSQL
        re-checks `version = <read>` on the latest row version once a concurrent writer of the
        saga commits, so the gate sees every write made meanwhile."""
        saga, row, target = change.saga, change.attempt, change.target
        version = _field(Saga, "version")
        statement = _Statement()
        statement.update(
            "saga",
            saga,
            [*_changed(saga, change.saga_before), (version, change.saga_before["version"] + 1)],
            [(version, change.saga_before["version"], "=")],
        )
        statement.update(
            "attempt",
            row,
            [(_field(SagaStep, n), getattr(row, n)) for n in OUTCOME_FIELDS],
            [(_field(SagaStep, "status"), SagaStep.Status.SCHEDULED, "=")],
            after="saga",
        )
        last = "attempt"
        target_sets = _changed(target, change.target_before) if target is not None else []
        if target is not None and target_sets:
            guards = [
                (f, change.target_before[f.attname], "IS NOT DISTINCT FROM") for f, _ in target_sets
            ]
            statement.update("target", target, target_sets, guards, after=last)
            last = "target"
        columns = [f"1 / (SELECT count(*) FROM {last})::int"]  # noqa: S608  # nosec B608
        previous = last
        for i, obj in enumerate(change.new):
            statement.insert(f"new{i}", obj, after=previous)
            previous = f"new{i}"
            columns.append(f"(SELECT * FROM new{i})")  # noqa: S608  # nosec B608
        try:
            with _own_transaction(), connection.cursor() as cursor:
                cursor.execute(statement.sql(f"SELECT {', '.join(columns)}"), statement.params)
                written = cursor.fetchone()
        except (DataError, IntegrityError):
            return False
        for obj, pk in zip(change.new, written[1:], strict=True):
            obj.pk = pk
        _written(change)
        return True


def _own_transaction() -> AbstractContextManager[Any]:
    """A savepoint when the caller holds a transaction (a failed statement must not spoil it);
    nothing in autocommit, where the statement is its own transaction."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def _written(change: Change) -> None:
    change.saga.version = change.saga_before["version"] + 1
    for obj in (change.saga, change.attempt, change.target, *change.new):
        if obj is not None:
            _saved(obj)


def _saved(obj: Model) -> None:
    """What Model.save leaves on an object it wrote: saved, in this database."""
    obj._state.adding = False
    obj._state.db = connection.alias


# --- reading an attempt with its saga and target (PostgreSQL) ---------------------------------


@dataclass(frozen=True)
class _Node:
    """One model of the read: where its columns sit in the row, its columns' converters, and
    how it hangs from its parent node: the relation's cache setters, as select_related sets
    them (`on_child`: only for a unique relation, whose far side caches the parent too)."""

    model: type[Model]
    start: int
    fields: tuple[Field, ...]
    pk_index: int
    converters: tuple[tuple[int, tuple[Any, ...], Any], ...]  # (index, converters, expression)
    parent: int = -1
    on_parent: Any = None
    on_child: Any = None


class _Reader:
    """SagaStep joined with its saga and the saga's target relations as select_related joins
    them (INNER along non-null foreign keys from an inner join, else LEFT): one SELECT of every
    column of each model; each row made into model instances by `Model.from_db` after each
    column's converters (the backend's, then the column expression's, as a queryset applies
    them), with each relation's cache set, a missing one as None.

    Only what the saga definitions name is read along: foreign keys and one-to-ones, each path
    listed with the paths it goes through (target_relations() does), of models without
    multi-table inheritance or a composite primary key."""

    def __init__(self, paths: tuple[str, ...]) -> None:
        self.nodes: list[_Node] = []
        self.columns: list[str] = []
        joins = []
        at = {"": 0}
        inner = {0}  # the nodes reached by inner joins only
        self._add(SagaStep)
        for path in ("saga", *(f"saga__{p}" for p in paths)):
            head, _, name = path.rpartition("__")
            parent = at[head]
            relation = self.nodes[parent].model._meta.get_field(name)
            on_child: Any = None
            near: str | None
            far: str | None
            if isinstance(relation, ForeignKey):  # the parent's foreign key (or one-to-one)
                model, on_parent = relation.related_model, relation.set_cached_value
                near, far = relation.column, relation.target_field.column
                if relation.unique:
                    on_child = relation.remote_field.set_cached_value
            elif isinstance(relation, OneToOneRel):  # the reverse of the child's one-to-one
                model, on_parent = relation.related_model, relation.set_cached_value
                near, far = relation.field.target_field.column, relation.field.column
                on_child = relation.field.set_cached_value
            else:
                raise TypeError(f"{path}: only foreign keys and one-to-ones are read along")
            assert isinstance(model, type) and issubclass(model, Model)
            child = at[path] = self._add(model, parent, on_parent, on_child)
            kind = "LEFT JOIN"
            if isinstance(relation, ForeignKey) and not relation.null and parent in inner:
                kind = "JOIN"
                inner.add(child)
            table = _q(model._meta.db_table)
            joins.append(f" {kind} {table} t{child} ON t{child}.{_q(far)} = t{parent}.{_q(near)}")
        assert SagaStep._meta.pk is not None
        self.sql = (
            f"SELECT {', '.join(self.columns)} FROM {_q(SagaStep._meta.db_table)} t0"  # noqa: S608  # nosec B608
            f"{''.join(joins)} WHERE t0.{_q(SagaStep._meta.pk.column)} = %s"
        )

    def _add(
        self, model: type[Model], parent: int = -1, on_parent: Any = None, on_child: Any = None
    ) -> int:
        alias = f"t{len(self.nodes)}"
        fields = tuple(model._meta.concrete_fields)
        converters = []
        for i, f in enumerate(fields):
            expression = f.get_col(alias)
            found = connection.ops.get_db_converters(expression) + expression.get_db_converters(
                connection
            )
            if found:
                converters.append((i, tuple(found), expression))
        self.nodes.append(
            _Node(
                model,
                len(self.columns),
                fields,
                fields.index(model._meta.pk),
                tuple(converters),
                parent,
                on_parent,
                on_child,
            )
        )
        self.columns.extend(f"{alias}.{_q(f.column)}" for f in fields)
        return len(self.nodes) - 1

    def read(self, step_id: int) -> SagaStep | None:
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [step_id])
            row = cursor.fetchone()
        if row is None:
            return None
        objects: list[Model | None] = []
        for node in self.nodes:
            values = list(row[node.start : node.start + len(node.fields)])
            parent = objects[node.parent] if node.parent >= 0 else None
            obj = None
            if values[node.pk_index] is not None:  # else the relation is not there
                for i, converters, expression in node.converters:
                    for convert in converters:
                        values[i] = convert(values[i], expression, connection)
                names = [f.attname for f in node.fields]
                obj = node.model.from_db(connection.alias, names, values)
            if parent is not None:
                node.on_parent(parent, obj)
                if obj is not None and node.on_child is not None:
                    node.on_child(obj, parent)
            objects.append(obj)
        return objects[0]  # type: ignore[return-value]


@cache
def _reader(paths: tuple[str, ...]) -> _Reader:
    return _Reader(paths)


# --- reading what changed -------------------------------------------------------------------


def snapshot(obj: Model) -> dict[str, Any]:
    """The object's column values as they are now (as read or as last written)."""
    out = {}
    for f in _columns(type(obj)):
        value = getattr(obj, f.attname)
        out[f.attname] = copy.deepcopy(value) if isinstance(value, dict | list) else value
    return out


@cache
def _columns(model: type[Model]) -> tuple[Field, ...]:
    """The model's columns but its primary key."""
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


@cache
def _field(model: type[Model], name: str) -> Field:
    return next(f for f in model._meta.concrete_fields if name in (f.name, f.attname))


def _changed(obj: Model, before: dict[str, Any]) -> list[tuple[Field, Any]]:
    """(field, new value) for each column that changed since `before`, auto_now columns
    included: set now, as Model.save would, unless the change already set one (the hooks'
    announcement stamps the time its event shows, which is then the time written)."""
    out = []
    for f in _columns(type(obj)):
        if f.attname not in before or f.attname == "version":
            continue
        value = getattr(obj, f.attname)
        if value == before[f.attname]:
            value = f.pre_save(obj, False)
        if value != before[f.attname]:
            out.append((f, value))
    return out


def _guarded(obj: Model, before: dict[str, Any], sets: list[tuple[Field, Any]]) -> bool:
    """UPDATE obj's changed columns where each still holds the value read; whether it did."""
    guards: dict[str, Any] = {}
    for f, _ in sets:
        old = before[f.attname]
        guards[f.attname if old is not None else f"{f.attname}__isnull"] = (
            old if old is not None else True
        )
    manager = type(obj)._default_manager
    return bool(manager.filter(pk=obj.pk, **guards).update(**{f.attname: v for f, v in sets}))


# --- the one statement (PostgreSQL) ---------------------------------------------------------
# Identifiers in the SQL below come from the models' metadata, never from input; every value is
# a query parameter.


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

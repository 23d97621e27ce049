"""The check of each connection the pool lends (config/postgresql): one whose backend
PostgreSQL ended while it sat in the pool is replaced before Django uses it; a healthy one is
used without a query."""

from __future__ import annotations

import time
from unittest import mock

import psycopg
import pytest
from django.db import connection

from config.postgresql.base import DatabaseWrapper, usable

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the pool is PostgreSQL's"
)


@pytest.fixture
def pooled(db):
    """A second Django connection to the test database, through a pool of its own."""
    options = {**connection.settings_dict["OPTIONS"], "pool": {"min_size": 1, "max_size": 2}}
    wrapper = DatabaseWrapper({**connection.settings_dict, "OPTIONS": options}, "pool_check")
    yield wrapper
    wrapper.close()
    wrapper.close_pool()


def _admin() -> psycopg.Connection:
    params = connection.get_connection_params()
    return psycopg.connect(
        host=params.get("host"),
        port=params.get("port"),
        user=params.get("user"),
        password=params.get("password"),
        dbname=params["dbname"],
        autocommit=True,
    )


def _pid(wrapper: DatabaseWrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_connection_whose_backend_was_terminated_is_replaced(pooled):
    before = _pid(pooled)
    pooled.close()  # back to the pool
    with _admin() as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [before]).fetchone() == (True,)
        deadline = time.monotonic() + 5
        while (
            time.monotonic() < deadline
            and admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [before]).fetchone()
        ):
            time.sleep(0.05)
    after = _pid(pooled)  # Django's next use: works, on another backend
    assert after != before


def test_a_quiet_healthy_connection_is_used_without_a_query(pooled):
    _pid(pooled)
    pooled.close()
    real = psycopg.Connection.execute
    with mock.patch.object(
        psycopg.Connection, "execute", autospec=True, side_effect=real
    ) as execute:
        for _ in range(3):
            _pid(pooled)
            pooled.close()
    assert execute.call_count == 0


def test_a_closed_connection_is_not_usable():
    with _admin() as conn:
        assert usable(conn)
    assert not usable(conn)

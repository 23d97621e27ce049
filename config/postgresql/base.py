"""Django's PostgreSQL backend (ENGINE "config.postgresql" when DATABASE_URL's connections go
through psycopg's pool, config/settings/base.py), checking each connection the pool lends
without a round trip.

Django's CONN_HEALTH_CHECKS gives the pool psycopg_pool's own check, an empty query before each
lending: one round trip per request and per task, 7 % of a web process's CPU under the
front-door load and 4 % of a worker's time. Here a lent connection is checked by a query only
when the server said something while it sat in the pool. PostgreSQL speaks on an idle
connection only to end it (a restart, a terminated backend, an idle-session timeout: a FATAL
message, then the socket closes) or for a LISTEN notification (this product listens to none):
its socket then reads as ready, the query runs, and a dead connection goes back to the pool,
which discards it, and the next one is taken. A quiet socket is used as it is. What neither
check sees quickly, a peer gone without closing its socket (a network cut), fails the first
statement, which is retried like any lost connection.

`get_new_connection` is the method each Django backend implements to open (here: borrow) a
connection; this one borrows through Django's, then checks.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


def usable(conn: psycopg.Connection) -> bool:
    """Whether `conn`, just taken from the pool, works: no round trip unless its socket has
    something to read."""
    if conn.closed or conn.broken:
        return False
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if not readable:
        return True
    try:
        ConnectionPool.check_connection(conn)  # psycopg_pool's own check: an empty query
    except psycopg.Error:
        return False
    return True


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        pool = self.pool
        if pool is None:
            return super().get_new_connection(conn_params)
        # After a database restart every idle connection is dead: at most all of them, then a
        # new one (psycopg_pool opens it, waiting up to its timeout).
        for _ in range(pool.max_size):
            conn = super().get_new_connection(conn_params)
            if usable(conn):
                return conn
            pool.putconn(conn)  # broken: the pool closes it and opens another in its place
        return super().get_new_connection(conn_params)

"""The database settings each process gets from DATABASE_URL (config/settings/base.py)."""

from __future__ import annotations

from pathlib import Path

from config.settings.base import database_from_env

URL = "postgres://app@db.internal:5432/bookings"


def test_postgresql_goes_through_a_bounded_pool_per_process(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", URL)
    for name in ("DB_POOL", "DB_POOL_MIN_SIZE", "DB_POOL_MAX_SIZE", "DB_POOL_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    config = database_from_env(tmp_path / "unused.sqlite3")
    # Django refuses a pool with persistent connections; the pool checks each one it lends
    # (config/postgresql, tests/production/test_database_pool.py), not with Django's query.
    assert config["ENGINE"] == "config.postgresql"
    assert config["CONN_MAX_AGE"] == 0
    assert config["CONN_HEALTH_CHECKS"] is False
    pool = config["OPTIONS"]["pool"]
    assert pool["min_size"] == 1 and pool["max_size"] == 4
    assert 0 < pool["timeout"] <= 10 and pool["reconnect_timeout"] > 0

    monkeypatch.setenv("DB_POOL_MAX_SIZE", "8")  # config/gunicorn.py: its thread count
    assert database_from_env(tmp_path / "unused.sqlite3")["OPTIONS"]["pool"]["max_size"] == 8


def test_without_the_pool_each_thread_keeps_its_connection(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("DB_POOL", "0")  # behind PgBouncer, say
    monkeypatch.delenv("DB_CONN_MAX_AGE", raising=False)
    config = database_from_env(tmp_path / "unused.sqlite3")
    assert "pool" not in config["OPTIONS"]
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert config["CONN_MAX_AGE"] == 60
    assert "pool" not in database_from_env(tmp_path / "x.sqlite3", pool=False).get("OPTIONS", {})


def test_sqlite_gets_its_directory_created(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    path = tmp_path / "fresh" / "clone" / "db.sqlite3"
    config = database_from_env(path)
    assert Path(config["NAME"]) == path
    assert path.parent.is_dir()

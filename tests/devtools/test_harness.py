"""devtools/harness.py: throwaway servers that restart on the same port and leave nothing behind,
even when the code using them fails; tools that do nothing when imported."""

from __future__ import annotations

import importlib.util
import shutil
import sys

import psycopg
import pytest
import redis

from devtools import harness

from ..conftest import ROOT

needs_redis = pytest.mark.skipif(not shutil.which("redis-server"), reason="no redis-server")
needs_postgres = pytest.mark.skipif(
    not (harness.PG_BIN / "initdb").exists(), reason="no PostgreSQL binaries"
)


@needs_redis
def test_redis_restart_drops_data_and_connections_on_the_same_port():
    with harness.RedisServer() as server:
        client = redis.Redis.from_url(server.url(3))
        client.set("k", "v")
        port = server.port
        server.restart()
        assert server.port == port and server.answers()
        assert client.get("k") is None  # nothing persisted: a restart loses everything
    assert not server.answers()
    assert server.proc is not None and server.proc.poll() is not None
    assert not server.dir.exists()


@needs_redis
def test_a_server_is_stopped_and_removed_when_the_code_using_it_fails():
    with pytest.raises(RuntimeError, match="boom"), harness.RedisServer() as server:
        assert server.answers()
        raise RuntimeError("boom")
    assert not server.answers()
    assert not server.dir.exists()


@needs_postgres
def test_postgres_cluster_databases_and_restart():
    with harness.PostgresCluster() as cluster:
        url = harness.create_database(cluster.url(), "harness_check")
        assert harness.postgres_answers(url)
        with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
            started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
        cluster.restart()
        with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
            assert conn.execute("SELECT pg_postmaster_start_time()").fetchone() != started
        harness.drop_database(cluster.url(), "harness_check")
        assert not harness.postgres_answers(url)
    assert not harness.postgres_answers(cluster.url())
    assert not cluster.dir.exists()


def test_database_names_are_plain_identifiers():
    with pytest.raises(ValueError, match="not a plain database name"):
        harness.drop_database("postgres://postgres@127.0.0.1:1/postgres", 'x"; DROP DATABASE y')


@pytest.mark.parametrize("path", ["tools/chaos.py", "bench/run.py"])
def test_tools_parse_nothing_and_touch_nothing_at_import(path, monkeypatch):
    # Arguments these tools refuse: parsing them at import would exit.
    monkeypatch.setattr(sys, "argv", [path, "--no-such-option"])
    spec = importlib.util.spec_from_file_location(f"imported_{path.replace('/', '_')}", ROOT / path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.main)

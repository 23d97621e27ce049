"""What the benchmark measures besides time: PostgreSQL write transactions (xid delta, as the
peers count them), all transactions, WAL fsyncs; Redis publishes (LPUSH calls); CPU seconds by
process kind (web = the process creating bookings, worker, postgres, broker)."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

import psutil
import psycopg
import redis


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q
    f = int(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


@dataclass
class PgCounters:
    xid: int
    commits: int
    wal_sync: int
    wal_bytes: int
    wal_fpi: int
    lsn: str

    @classmethod
    def read(cls, dsn: str) -> PgCounters:
        with psycopg.connect(dsn, autocommit=True) as c:
            xid = c.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]
            commits = c.execute("SELECT sum(xact_commit) FROM pg_stat_database").fetchone()[0]
            wal_sync, wal_bytes, wal_fpi, lsn = c.execute(
                "SELECT wal_sync, wal_bytes, wal_fpi, pg_current_wal_lsn()::text FROM pg_stat_wal"
            ).fetchone()
        return cls(int(xid), int(commits), int(wal_sync), int(wal_bytes), int(wal_fpi), lsn)

    def delta(self, later: PgCounters) -> dict[str, int]:
        # Each read burns one xid; the stats counters are flushed about once a second.
        return {
            "write_xacts": later.xid - self.xid - 1,
            "xact_commit": later.commits - self.commits,
            "wal_sync": later.wal_sync - self.wal_sync,
            "wal_bytes": later.wal_bytes - self.wal_bytes,
            # Full-page images: the first change of a page after a checkpoint logs the whole page.
            "wal_fpi": later.wal_fpi - self.wal_fpi,
        }


def full_pages_by_relation(dsn: str, since: PgCounters, until: PgCounters, n: int) -> dict:
    """Full-page images per saga by table or index, between two readings, from the WAL itself
    (pg_walinspect, shipped with PostgreSQL 15; {"unavailable": why} if it cannot be installed).
    Only this database's relations count (the WAL is the whole server's). A relation whose pages
    are changed at random spots (a random key's index) shows here as it grows."""
    blocks = re.compile(r"rel \d+/(\d+)/(\d+) fork main blk \d+ \(FPW\)")
    counts: dict[int, int] = {}
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            (database,) = c.execute(
                "SELECT oid FROM pg_database WHERE datname = current_database()"
            ).fetchone()
            rows = c.execute(
                "SELECT block_ref FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn)"
                " WHERE fpi_length > 0",
                [since.lsn, until.lsn],
            ).fetchall()
            for (refs,) in rows:
                for db, node in blocks.findall(refs or ""):
                    if int(db) == database:
                        counts[int(node)] = counts.get(int(node), 0) + 1
            names = dict(
                c.execute(
                    "SELECT relfilenode, relname FROM pg_class WHERE relfilenode = ANY(%s)",
                    [list(counts)],
                ).fetchall()
            )
    except psycopg.Error as exc:
        return {"unavailable": str(exc).splitlines()[0]}
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:8]
    return {names.get(node, str(node)): round(count / n, 2) for node, count in top}


def redis_publishes(url: str) -> int:
    """Messages published to a Redis broker so far (kombu publishes with LPUSH)."""
    stats = redis.Redis.from_url(url).info("commandstats")
    return int(stats.get("cmdstat_lpush", {}).get("calls", 0))


def _kind(proc: psutil.Process, me: int) -> str | None:
    if proc.info["pid"] == me:
        return "web"
    name = proc.info["name"] or ""
    cmd = " ".join(proc.info.get("cmdline") or [])
    if name.startswith("postgres") or name == "postmaster":
        return "postgres"
    if name.startswith("redis") or "rabbit" in cmd or name == "beam.smp":
        return "broker"
    if "celery" in cmd and "worker" in cmd:
        return "worker"
    if "gunicorn" in cmd:
        return "web"
    if "bench.receiver" in cmd:
        return "receiver"  # the webhook receiver, a client's server: not the pipeline's
    return None


class CpuMeter:
    """CPU seconds by process kind over a window; children reaped inside it count for their
    parent (the postmaster's backends, a worker's pool processes)."""

    def __init__(self) -> None:
        self.me = os.getpid()

    def _snap(self) -> dict[int, tuple[str, float]]:
        out = {}
        for p in psutil.process_iter(["pid", "name", "cmdline", "cpu_times"]):
            t = p.info["cpu_times"]
            kind = _kind(p, self.me) if t is not None else None
            if kind is None:
                continue
            own = t.user + t.system
            out[p.info["pid"]] = (kind, own if p.info["pid"] == self.me else
                                  own + t.children_user + t.children_system)  # fmt: skip
        return out

    def start(self) -> CpuMeter:
        self.t0, self.s0 = time.monotonic(), self._snap()
        return self

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        by: dict[str, float] = {}
        for pid, (kind, secs) in self._snap().items():
            by[kind] = by.get(kind, 0.0) + max(0.0, secs - self.s0.get(pid, (kind, 0.0))[1])
        return {"wall_s": wall, **{f"{k}_cpu_s": v for k, v in sorted(by.items())}}

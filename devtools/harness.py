"""The one harness of the test suite, `make bench` and `make chaos`: throwaway servers, Celery
workers, database reset and service checks. Importing it does nothing; every server and worker
is started by a call and stopped by its context manager (or stop()), even when the code inside
fails, so no run leaves a process behind.

Throwaway servers are ours alone: a `redis-server`, a PostgreSQL cluster made by `initdb` and a
RabbitMQ node, each on free ports of 127.0.0.1 with its files in a temporary directory. Tools
that stop or restart a server use these, never the machine's own (a developer's database).

    with RedisServer() as redis, PostgresCluster() as pg:
        create_database(pg.url("postgres"), "chaos")
        with Worker("w1", settings="config.settings.test", queues="chaos", env={...}) as w:
            ...
            redis.restart()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(
    os.environ.get("PG_BIN")
    or max(  # the newest installed major version
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: [int(part) for part in path.parent.name.split(".") if part.isdigit()],
        default="/usr/lib/postgresql/15/bin",
    )
)


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f}s")


def _kill_group(proc: subprocess.Popen | None, *, grace: float = 15) -> None:
    """SIGTERM a process started in a session of its own, and everything it started; SIGKILL
    what is still there after `grace` seconds."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        proc.wait(10)


# --- service checks --------------------------------------------------------------------------


def postgres_answers(url: str, timeout: float = 2) -> bool:
    """True if PostgreSQL at `url` accepts a connection and a query."""
    import psycopg

    try:
        with psycopg.connect(_libpq(url), connect_timeout=max(1, round(timeout))) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def redis_answers(url: str, timeout: float = 2) -> bool:
    """True if Redis at `url` answers PING."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.exceptions.RedisError, OSError):
        return False
    finally:
        client.close()


def amqp_answers(url: str, timeout: float = 2) -> bool:
    """True if the AMQP broker at `url` (RabbitMQ) accepts a connection."""
    import kombu
    import kombu.exceptions

    conn = kombu.Connection(url, connect_timeout=timeout)
    try:
        conn.connect()
        return True
    except (OSError, ConnectionError, kombu.exceptions.KombuError):
        return False
    finally:
        conn.release()


# --- database reset --------------------------------------------------------------------------


def _libpq(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1] if url.startswith("postgres://") else url


def _identifier(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain database name: {name!r}")
    return f'"{name}"'


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name` (and close its sessions) on the server of `admin_url`."""
    import psycopg

    quoted = _identifier(name)
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")


def create_database(admin_url: str, name: str, *, fresh: bool = True) -> str:
    """Create database `name` on the server of `admin_url` (dropped first if `fresh`) and return
    its URL."""
    import psycopg

    quoted = _identifier(name)
    if fresh:
        drop_database(admin_url, name)
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f"CREATE DATABASE {quoted}")
    return admin_url.rsplit("/", 1)[0] + "/" + name


def migrate(database_url: str, *, settings: str, env: Mapping[str, str] | None = None) -> None:
    """Apply the migrations to `database_url` in a process of its own."""
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env={
            **os.environ,
            **(env or {}),
            "DJANGO_SETTINGS_MODULE": settings,
            "DATABASE_URL": database_url,
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise RuntimeError(f"migrate failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def database_url(settings_dict: Mapping[str, Any]) -> str:
    """The URL of a Django DATABASES entry, for the processes we start."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


# --- throwaway servers -----------------------------------------------------------------------


class _Server:
    """start(), stop(), restart(); as a context manager, started on entry, stopped and its
    files removed on exit, whatever happened inside."""

    kind = "server"

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"harness-{self.kind}-"))

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def answers(self) -> bool:
        raise NotImplementedError

    def restart(self) -> None:
        """Down (clients' connections dropped), then up again on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its files."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        logs = sorted(self.dir.rglob("*.log"))
        return "\n".join(p.read_text(errors="replace")[-chars:] for p in logs)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RedisServer(_Server):
    """A `redis-server` of our own: nothing on disk, so a restart loses every message, as a
    Redis without persistence does."""

    kind = "redis"

    def __init__(self) -> None:
        super().__init__()
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def answers(self) -> bool:
        return redis_answers(self.url())

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_until(self.answers, timeout=30, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        _kill_group(self.proc)  # SIGTERM: with --save "" it exits without writing anything


class PostgresCluster(_Server):
    """A PostgreSQL cluster made by `initdb` in a temporary directory and run with `pg_ctl` on a
    free port of 127.0.0.1, user `postgres`, trust authentication. As root, the server runs as
    the `postgres` system user (initdb refuses root)."""

    kind = "postgres"

    def __init__(self, *, max_connections: int = 200) -> None:
        super().__init__()
        self.max_connections = max_connections  # none reserved for superusers: all are usable
        self.data = self.dir / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            import pwd

            account = pwd.getpwnam("postgres")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def url(self, name: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def answers(self) -> bool:
        return postgres_answers(self.url())

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        done = subprocess.run(
            [*self._as, *cmd], capture_output=True, text=True, timeout=timeout, cwd=self.dir
        )
        if done.returncode:
            raise RuntimeError(f"{cmd[0]} failed: {done.stdout[-1500:]} {done.stderr[-1500:]}")

    def start(self) -> None:
        if not self.data.exists():
            self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                      "-A", "trust", "-E", "UTF8", "--no-sync")  # fmt: skip
        # fsync off: a throwaway cluster; its restarts are clean shutdowns, which write all.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off "
            f"-c max_connections={self.max_connections} -c superuser_reserved_connections=0"
        )
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "pg.log"),
                  "-o", options, "-w", "-t", "60", "start")  # fmt: skip
        wait_until(self.answers, timeout=30, what=f"PostgreSQL on port {self.port}")

    def stop(self) -> None:
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return
        try:  # fast: sessions are ended and clients see their connection drop
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            if pid_file.exists():  # never leave a postmaster behind
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGQUIT)
                wait_until(lambda: not pid_file.exists(), timeout=30, what="postmaster exit")


def _rabbitmq_server() -> str | None:
    packaged = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # Debian's, without su wrapper
    return str(packaged) if packaged.exists() else shutil.which("rabbitmq-server")


class RabbitMQNode(_Server):
    """A RabbitMQ node of our own (its own node name, AMQP and distribution ports, database and
    logs in a temporary directory, no plugins) beside any the machine runs. As root it runs as
    the `rabbitmq` system user, whose Erlang cookie rabbitmqctl also uses."""

    kind = "rabbitmq"

    def __init__(self) -> None:
        super().__init__()
        self.dist_port = free_port()
        self.node = f"harness{self.port}@localhost"
        self.proc: subprocess.Popen | None = None
        self._as: list[str] = []
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.dir / "rabbitmq-env.conf").write_text("")  # not the machine's /etc/rabbitmq one
        if os.geteuid() == 0:
            import pwd

            account = pwd.getpwnam("rabbitmq")
            for path in [self.dir, *self.dir.iterdir()]:
                os.chown(path, account.pw_uid, account.pw_gid)
            self._as = ["runuser", "-u", "rabbitmq", "--"]

    @staticmethod
    def available() -> bool:
        return _rabbitmq_server() is not None

    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def answers(self) -> bool:
        return amqp_answers(self.url())

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "node.pid"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.dir / "plugins-expand"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def ctl(self, *args: str) -> None:
        ctl = Path(_rabbitmq_server() or "rabbitmqctl").with_name("rabbitmqctl")
        done = subprocess.run(
            [*self._as, str(ctl), "-n", self.node, *args],
            capture_output=True, text=True, timeout=120, env=self._env(), cwd=self.dir,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stdout} {done.stderr}")

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:  # the node runs, its app not
            self.ctl("start_app")
        else:
            server = _rabbitmq_server()
            if server is None:
                raise RuntimeError("rabbitmq-server is not installed")
            log = (self.dir / "server.log").open("a")
            self.proc = subprocess.Popen(
                [*self._as, server], env=self._env(), cwd=self.dir, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            log.close()
        wait_until(self.answers, timeout=120, what=f"RabbitMQ node {self.node}")

    def restart(self) -> None:
        """The broker down and up (`stop_app`, `start_app`: every connection dropped) without
        the minute a whole Erlang node takes to boot."""
        self.ctl("stop_app")
        self.start()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.ctl("stop")
            self.proc.wait(60)
        except (RuntimeError, subprocess.TimeoutExpired):
            _kill_group(self.proc)


# --- Celery workers --------------------------------------------------------------------------


class Worker:
    """A real `celery worker` process (its own session: kill() and stop() end its pool children
    too) with the environment given. `settings` is required: nothing here falls back to a
    default settings module. As a context manager, stopped on exit."""

    def __init__(
        self,
        name: str,
        *,
        settings: str,
        queues: str,
        env: Mapping[str, str],
        log_path: Path,
        concurrency: int = 2,
        pool: str = "prefork",
        ready_timeout: float = 60,
    ) -> None:
        self.name = name
        self.settings = settings
        self.queues = queues
        self.env = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": settings}
        self.log_path = log_path
        self.concurrency = concurrency
        self.pool = pool
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None

    @property
    def broker_url(self) -> str:
        return self.env.get("CELERY_BROKER_URL", "")

    def start(self, *, wait: bool = True) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "worker",
                 "--loglevel=WARNING", f"--pool={self.pool}",
                 *([] if self.pool == "solo" else [f"--concurrency={self.concurrency}"]),
                 f"--queues={self.queues}", f"--hostname={self.name}@%h",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()  # never leave a worker behind to steal the next run's messages
                raise
        return self

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout
        node = f"{self.name}@{socket.gethostname()}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited: {self.log_path.read_text()}")
            if not self.broker_url.startswith(("redis", "amqp", "pyamqp")):
                # No broadcast on the filesystem transport: give the pool time to start.
                time.sleep(3)
                if self.proc.poll() is None:
                    return
            elif self._answers(node):
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker {self.name} not ready after {self.ready_timeout}s")

    def _answers(self, node: str) -> bool:
        from celery import Celery

        # An app and a connection of their own each time: a broker restarted by a fault test
        # leaves pooled connections dead. Celery prefers a CELERY_BROKER_URL in this process's
        # environment (the suite's broker) to an app's broker_url, not to its write URL.
        app = Celery(set_as_current=False)
        app.conf.broker_write_url = app.conf.broker_read_url = self.broker_url
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
                return bool(app.control.ping(destination=[node], timeout=0.5, connection=conn))
        except Exception:  # the broker is not there yet: not ready
            return False
        finally:
            app.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once: no cleanup, no acknowledgement."""
        if self.running():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (warm shutdown), SIGKILL after 20 s."""
        _kill_group(self.proc, grace=20)

    def __enter__(self) -> Self:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

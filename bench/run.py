"""`make bench`: bookings driven through their saga with full durability, on this machine, next to
the peers (../shared/peers) measured in the same sitting. Prints one table, writes
bench/results/<date>.json and bench/results/<date>.png.

Everything runs on 127.0.0.1 against the machine's PostgreSQL and Redis, in a database of its
own (--database, recreated when the run starts) and Redis databases of its own (--redis-db and
the next); it starts and stops its own Celery workers (and gunicorn for the API figures) and
stops by itself. It restarts no server.

    .venv/bin/python bench/run.py                 # everything (about 12 minutes)
    .venv/bin/python bench/run.py --only saga     # a subset: saga, orm, remote, rows-first,
                                                  # rate, mix, queries, workers, growth, sweep,
                                                  # webhooks,
                                                  # admin, api, peers (3 interleaved rounds),
                                                  # front_door (the API and the Procfile's
                                                  # processes next to drf_min and DBOS)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the project's packages next to bench/
    sys.path.insert(0, str(ROOT))

from devtools import harness  # noqa: E402

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
QUEUE = "bench"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sagas", type=int, default=2000)
    p.add_argument(
        "--processes", type=int, default=os.cpu_count() or 2, help="worker processes (cores)"
    )
    p.add_argument("--pool-type", default="solo", choices=["solo", "prefork", "threads"])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of ours and the peers")
    p.add_argument(
        "--front-bookings", type=int, default=1000, help="front_door: bookings per end-to-end run"
    )
    p.add_argument("--front-clients", default="16,50", help="front_door: HTTP clients per run")
    p.add_argument("--front-rounds", type=int, default=2, help="front_door: interleaved rounds")
    p.add_argument(
        "--front-parts",
        default="e2e,e2e_remote,dbos,api,drf_min",
        help="front_door: what each round runs (e2e: sandbox providers; e2e_remote: providers "
        "on another machine, bench/remote.py, as the peers' steps; dbos, api, drf_min)",
    )
    p.add_argument("--front-api-seconds", type=float, default=6.0)
    p.add_argument(
        "--front-paced",
        default="50@25",
        help="front_door: CLIENTS@RATE, a run of that many clients offering RATE bookings/s in "
        "all (20 s of them): the create's latency below saturation; empty to skip",
    )
    p.add_argument("--only", default="", help="comma-separated subset of scenarios")
    p.add_argument("--skip", default="", help="comma-separated scenarios to skip")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument(
        "--database", default="bookingops_bench", help="the bench's database (dropped, recreated)"
    )
    p.add_argument(
        "--redis-db", type=int, default=11, help="Redis database of the broker; the cache: the next"
    )
    return p.parse_args(argv)


def environment(args: argparse.Namespace) -> dict[str, str]:
    """The bench's processes' settings: production's, on the bench's database and queue."""
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "bench-" + "x7Kq2mP9vL4nR8sT1wY6zB3cF5hJ0dG" * 2,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": f"{PG_SERVER}/{args.database}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{args.redis_db}",
        "CACHE_URL": f"redis://127.0.0.1:6379/{args.redis_db + 1}",
        "CELERY_QUEUE": QUEUE,
        "BOOKING_QUEUE_FRAUD": QUEUE,
        "BOOKING_QUEUE_PAYMENTS": QUEUE,
        "BOOKING_QUEUE_INVENTORY": QUEUE,
        "BOOKING_QUEUE_EMAIL": QUEUE,
        # Webhook deliveries on a queue of their own, to a receiver the bench runs on 127.0.0.1.
        "WEBHOOK_QUEUE": f"{QUEUE}-webhooks",
        "WEBHOOK_REQUIRE_HTTPS": "0",
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "LOG_LEVEL": "WARNING",
        "DATA_DIR": str(ROOT / "var" / "bench"),
        # Sandbox providers, as on a staging deployment: the load is ours, not a gateway's.
        "BOOKING_ALLOW_SANDBOX": "1",
        "BOOKING_FRAUD_PROVIDER": "sandbox.fraud.SandboxFraudScreening",
        "BOOKING_PAYMENT_PROVIDER": "sandbox.payments.SandboxPaymentGateway",
        "BOOKING_INVENTORY_PROVIDER": "sandbox.inventory.SandboxInventory",
        "BOOKING_EMAIL_PROVIDER": "sandbox.email.SandboxEmailSender",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    env = environment(args)
    os.environ.update(env)  # this process and every one it starts
    os.chdir(ROOT)
    for name, up in (
        ("PostgreSQL", harness.postgres_answers(f"{PG_SERVER}/postgres")),
        ("Redis", harness.redis_answers(env["CELERY_BROKER_URL"])),
    ):
        if not up:
            print(f"bench: {name} does not answer on 127.0.0.1; start it first", file=sys.stderr)
            return 2
    harness.create_database(f"{PG_SERVER}/postgres", args.database)
    harness.migrate(env["DATABASE_URL"], settings=env["DJANGO_SETTINGS_MODULE"])

    import django

    django.setup()

    from bench import scenarios

    return scenarios.run(args)


if __name__ == "__main__":
    sys.exit(main())

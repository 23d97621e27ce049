"""Say in one line why the database cannot be reached, or nothing when it can. `make run` calls it
before migrating: Django's connection pool would only report a timeout after some seconds, with
the cause (say, a database not created yet) in warning lines above a long traceback."""

from __future__ import annotations

from typing import Any

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection


class Command(BaseCommand):
    help = "Check that the PostgreSQL database of DATABASE_URL answers (SQLite: nothing to do)."

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            return
        db = settings.DATABASES["default"]
        try:
            psycopg.connect(
                dbname=db["NAME"],
                user=db["USER"] or None,
                password=db["PASSWORD"] or None,
                host=db["HOST"] or None,
                port=db["PORT"] or None,
                connect_timeout=5,
            ).close()
        except psycopg.OperationalError as exc:
            cause = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            if "does not exist" in cause and f'"{db["NAME"]}"' in cause:
                where = f"-h {db['HOST'] or '127.0.0.1'} -U {db['USER'] or 'postgres'}"
                cause += f" (create it first: createdb {where} {db['NAME']})"
            raise CommandError(f"DATABASE_URL: the database does not answer: {cause}") from exc

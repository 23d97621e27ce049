"""`make run` checks the database before migrating, and says in one line what is wrong."""

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL only (SQLite needs no server)"
)


def test_a_database_that_answers_passes_quietly(db, capsys):
    call_command("database_ready")
    assert capsys.readouterr().out == ""


def test_a_missing_database_is_named_with_how_to_create_it(db, settings):
    default = {**settings.DATABASES["default"], "NAME": "bookingops_never_created"}
    settings.DATABASES = {**settings.DATABASES, "default": default}
    with pytest.raises(CommandError) as refused:
        call_command("database_ready")
    message = str(refused.value)
    assert 'database "bookingops_never_created" does not exist' in message
    assert "createdb -h" in message and message.endswith("bookingops_never_created)")

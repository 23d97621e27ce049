"""`manage.py devserver`: Django's runserver (static files included) for `make run`, with a
listen backlog that holds a burst of clients.

runserver's WSGIServer accepts 10 pending connections (`request_queue_size`); 50 clients
connecting at once got connection resets for about half of them before a thread ever saw their
request. Each accepted request still gets its own thread, and its database connection comes from
the process's pool (config/settings/base.py, database_from_env).
"""

from django.contrib.staticfiles.management.commands.runserver import Command as RunserverCommand
from django.core.servers.basehttp import WSGIServer


class BurstTolerantWSGIServer(WSGIServer):
    # The kernel caps it at net.core.somaxconn (4096 on current Linux).
    request_queue_size = 1024


class Command(RunserverCommand):
    help = "Django's runserver with a listen backlog of 1024 connections (make run)."
    server_cls = BurstTolerantWSGIServer

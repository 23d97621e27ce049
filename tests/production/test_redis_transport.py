"""The Redis transport (config/broker.py): kombu's, keeping one redis-py client per channel
instead of building one for every message published, delivered and acknowledged."""

from __future__ import annotations

import os

import pytest
import redis
from django.conf import settings
from kombu import Connection

from config import broker

pytestmark = pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis"),
    reason="the Redis transport needs the suite to run on Redis (CELERY_BROKER_URL=redis://...)",
)


@pytest.fixture
def queue_name():
    name = f"transport-test-{os.getpid()}"
    yield name
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(name)


@pytest.fixture
def clients_built(monkeypatch) -> list[int]:
    """Each redis.Redis object built from now on (the library's class, counted)."""
    built: list[int] = []
    original = redis.Redis.__init__

    def counted(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counted)
    return built


def test_redis_urls_resolve_to_the_reusing_transport():
    with Connection(settings.CELERY_BROKER_URL) as conn:
        assert isinstance(conn.default_channel, broker.RedisChannel)


def test_messages_go_through_whole_and_in_order_with_one_client_for_all(queue_name, clients_built):
    with Connection(settings.CELERY_BROKER_URL) as conn:
        queue = conn.SimpleQueue(queue_name)
        for n in range(20):
            queue.put({"n": n})
        received = []
        for _ in range(20):
            message = queue.get(timeout=5)
            received.append(message.payload["n"])
            message.ack()
        assert received == list(range(20))
        channel = conn.default_channel
        assert channel._sync_client.llen(queue_name) == 0
        # Every delivery was recorded as unacknowledged and every ack removed it again (the
        # hash is shared with the suite's other queues: only ours must be gone from it).
        unacked = channel._sync_client.hvals(channel.unacked_key)
        assert not [entry for entry in unacked if queue_name.encode() in entry]
    # One client for the 20 publishes, 20 deliveries and 20 acks (kombu's made one each), and
    # the consumer's own (asynchronous) one.
    assert len(clients_built) <= 3


def test_a_new_pool_gets_a_new_client(queue_name):
    with Connection(settings.CELERY_BROKER_URL) as conn:
        queue = conn.SimpleQueue(queue_name)
        queue.put({"n": 1})
        channel = conn.default_channel
        first = channel._sync_client
        channel._disconnect_pools()  # what kombu does after a fork
        queue.put({"n": 2})
        assert channel._sync_client is not first
        assert channel._sync_client.connection_pool is channel.pool
        got = [queue.get(timeout=5) for _ in range(2)]
        assert [m.payload["n"] for m in got] == [1, 2]
        for m in got:
            m.ack()

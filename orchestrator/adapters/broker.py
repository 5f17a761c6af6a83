"""Looking at the Celery broker from outside Celery: how many tasks wait, and whether it answers."""

from __future__ import annotations

import redis
from kombu import Connection

# kombu's Redis transport keeps one list per priority step: the queue's own name, then name + SEP + step.
PRIORITY_STEPS = (0, 3, 6, 9)
SEP = "\x06\x16"


def queue_depth(client: redis.Redis, queue: str) -> int:
    """Messages waiting in a Celery queue (not counting those a worker holds unacknowledged)."""
    pipe = client.pipeline(transaction=False)
    for step in PRIORITY_STEPS:
        pipe.llen(queue if step == 0 else f"{queue}{SEP}{step}")
    return sum(pipe.execute())


def check_broker(url: str, timeout: float = 2.0) -> None:
    """Open a kombu connection to the broker and a channel on it; raises when it cannot."""
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "max_retries": 0}
    with Connection(url, connect_timeout=timeout, transport_options=options) as connection:
        connection.ensure_connection(max_retries=0, timeout=timeout)
        connection.channel().close()  # the Redis transport pings the server when it opens a channel

"""The system tests' view of a broker's `checkins` queue: on RabbitMQ declared, emptied and counted; on Redis
counted and read."""

from __future__ import annotations

import json
import subprocess

import redis
from kombu import Connection

from rewards import contract


class RabbitCheckins:
    """The suite's vhost on the shared node, with the workers' topology and an empty `checkins` queue.

    Producers declare nothing, and a test may queue jobs before any worker
    runs: the topology is declared first, as the definitions give it in
    production.
    """

    def __init__(self, url: str):
        self.url, self.vhost = url, url.rsplit("/", 1)[1]
        with Connection(url) as connection:
            for queue in contract.kombu_queues():
                queue(connection.default_channel).declare()
        subprocess.run(["rabbitmqctl", "-q", "purge_queue", "-p", self.vhost, "checkins"], capture_output=True)

    def _count(self, column: str) -> int:
        out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", self.vhost, "name", column],
                             capture_output=True, text=True, check=True).stdout
        return sum(int(n) for name, n in (line.split() for line in out.splitlines() if line.strip())
                   if name == "checkins" and n.isdigit())

    def queued(self) -> int:
        return self._count("messages_ready")

    def unacknowledged(self) -> int:
        return self._count("messages_unacknowledged")


class RedisCheckins:
    """A Redis broker's `checkins` list and `unacked` hash, read without taking anything."""

    def __init__(self, url: str):
        self.url, self.client = url, redis.Redis.from_url(url, socket_timeout=5)

    def queued(self) -> int:
        return self.client.llen("checkins")

    def unacknowledged(self) -> int:
        return self.client.hlen("unacked")

    def unacknowledged_ids(self) -> set[str]:
        """The job ids of the `unacked` hash: what workers took and have not acknowledged.

        Each value is kombu's [message, exchange, routing key]; Celery's
        message protocol carries the job id in the message's headers.
        """
        return {json.loads(raw)[0]["headers"]["id"] for raw in self.client.hvals("unacked")}

    def held_ids(self) -> set[str]:
        """The job ids the broker holds: queued, or taken and not yet acknowledged."""
        queued = {json.loads(raw)["headers"]["id"] for raw in self.client.lrange("checkins", 0, -1)}
        return queued | self.unacknowledged_ids()

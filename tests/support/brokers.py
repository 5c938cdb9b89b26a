"""The system tests' view of a RabbitMQ vhost: its `checkins` queue, declared, emptied and counted."""

from __future__ import annotations

import subprocess

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

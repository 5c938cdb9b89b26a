"""The worker's consumer on quorum queues: no native delayed delivery, and the parked queue declared.

Celery turns on "native delayed delivery" when it sees quorum queues: it
declares 28 delay queues and moves countdowns through them, but only for
queues bound to topic exchanges. Ours are direct (one exchange per queue,
the unit RabbitMQ grants write permission on: rewards.access.rabbitmq), so a
retry's countdown is held by the worker that takes the message, as on
classic queues: the message stays unacknowledged in the replicated queue
until the countdown ends and the job has run, and comes back if that worker
dies. The step would only declare queues nothing uses, so it is left out,
and Celery's warning on every such countdown is dropped.
"""

from __future__ import annotations

import logging

from celery import bootsteps
from celery.worker.consumer import Consumer as CeleryConsumer

from rewards import contract

DIRECT_EXCHANGE_WARNING = "Direct exchanges are not supported with native delayed delivery"


class DeclareParked(bootsteps.StartStopStep):
    """Declare the queue RabbitMQ dead-letters a job to once it was handed back too often (contract.PARKED_QUEUE).

    The job queues name its exchange; without the queue bound to it, a
    parked job would be dropped. No worker consumes it: an operator looks
    at what is there and moves it back once its cause is fixed.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c) -> None:
        if c.connection.transport.driver_type == "amqp":
            with c.connection.channel() as channel:
                contract.parked_queue()(channel).declare()


class Consumer(CeleryConsumer):
    class Blueprint(CeleryConsumer.Blueprint):
        default_steps = [step for step in CeleryConsumer.Blueprint.default_steps
                         if not step.endswith(":DelayedDelivery")] + ["workers.consumer:DeclareParked"]


class _DropDirectExchangeWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(DIRECT_EXCHANGE_WARNING)


def quiet_countdown_warning() -> None:
    logging.getLogger("celery.app.base").addFilter(_DropDirectExchangeWarning())

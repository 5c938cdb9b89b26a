"""rewards.adjust: an operator grants or deducts XP (queue `operator`)."""

from datetime import datetime

from rewards import contract
from rewards.contract.payloads import AdjustmentJob
from rewards.contract.results import Outcome
from rewards.ledger.adjustments import Sender, apply_adjustment
from workers import app
from workers.base import LedgerTask


def sender_of(request, broker_url: str) -> Sender:
    """Who sent the job: the message's `user_id`, vouched for only where the broker checks it.

    RabbitMQ refuses a message whose `user_id` is not the user that
    published it; on Redis and the embedded broker the producer writes it
    freely, so it is recorded as a claim.
    """
    user_id = (request.properties or {}).get("user_id")
    name = user_id if isinstance(user_id, str) and user_id else None
    return Sender(name=name, verified=name is not None and contract.through_exchanges(broker_url))


@app.task(name=contract.ADJUST, base=LedgerTask, payload_model=AdjustmentJob, bind=True)
def adjust(self, conn, job: AdjustmentJob, now: datetime) -> Outcome:
    return apply_adjustment(conn, job, now=now, sender=sender_of(self.request, self.app.conf.broker_url))

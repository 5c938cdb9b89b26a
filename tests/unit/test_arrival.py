"""The queue a job arrived through: stamped by the consumer, checked before the job runs."""

import pytest

from rewards import contract
from rewards.transport import stamp_arrival
from workers.base import arrival_refusal


def test_a_consumer_stamps_the_contract_queue_it_took_a_message_from_over_what_the_producer_wrote():
    message = {"properties": {"delivery_info": {"exchange": "operator", "routing_key": "operator"}}}
    stamp_arrival(message, "claims")
    assert message["properties"]["delivery_info"] == {"exchange": "claims", "routing_key": "claims"}


def test_a_consumer_leaves_celerys_own_queues_and_malformed_messages_as_they_are():
    reply = {"properties": {"delivery_info": {"exchange": "reply.celery.pidbox", "routing_key": "x"}}}
    stamp_arrival(reply, "x.reply.celery.pidbox")
    assert reply["properties"]["delivery_info"] == {"exchange": "reply.celery.pidbox", "routing_key": "x"}
    for malformed in ({}, {"properties": None}, []):
        stamp_arrival(malformed, "claims")


@pytest.mark.parametrize("task_name", sorted(contract.QUEUE_BY_TASK) + [contract.MAINTENANCE_RECONCILE])
def test_a_job_is_admitted_only_through_its_own_queue(task_name):
    own = contract.queue_for(task_name)
    assert arrival_refusal(task_name, {"exchange": own, "routing_key": own}) is None
    for other in set(contract.QUEUES) - {own}:
        refusal = arrival_refusal(task_name, {"exchange": other, "routing_key": own})
        assert (refusal.status, refusal.reason) == ("rejected", "not_permitted")


@pytest.mark.parametrize("delivery_info", [None, {}, {"exchange": ""}, {"exchange": None}])
def test_a_job_with_no_queue_of_arrival_is_refused(delivery_info):
    refusal = arrival_refusal(contract.CHECKIN, delivery_info)
    assert refusal.reason == "not_permitted" and "'no queue'" in refusal.message


def test_adjustments_travel_alone_on_the_operator_queue_which_upstream_may_not_write():
    assert [name for name, queue in contract.QUEUE_BY_TASK.items() if queue == contract.QUEUE_OPERATOR] == [
        contract.ADJUST]
    assert contract.QUEUE_OPERATOR not in contract.QUEUES_BY_ROLE[contract.ROLE_UPSTREAM]
    assert contract.QUEUE_MAINTENANCE not in contract.QUEUES_BY_ROLE[contract.ROLE_UPSTREAM]
    assert contract.QUEUES_BY_ROLE[contract.ROLE_BEAT] == (contract.QUEUE_MAINTENANCE,)

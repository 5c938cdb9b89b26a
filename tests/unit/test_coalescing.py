"""Coalescing's gathering rules (rewards.coalescing.Coalescer), with a publish function of the test's own.

What the worker makes of the messages, and reading the results, are tested
through the real broker and worker in tests/integration/test_coalescing.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from rewards.coalescing import Coalescer

KIND = "rewards.checkin.batch"


class Recorder:
    """A publish function that records each message; `hold` keeps the next publish waiting until set."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.messages: list[list[dict]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, kind: str, items: list[dict], ignore_result: bool) -> tuple[str, bool]:
        self.hold.wait(10)
        if self.fail is not None:
            raise self.fail
        with self.lock:
            self.messages.append(list(items))
            return f"message-{len(self.messages)}", len(items) == 1


def submit_from_threads(coalescer: Coalescer, count: int) -> tuple[list, list]:
    """`count` threads submit one job each at once; their handles (by job) and errors."""
    handles: list = [None] * count
    errors: list = [None] * count
    barrier = threading.Barrier(count)

    def send(number: int) -> None:
        barrier.wait()
        try:
            handles[number] = coalescer.submit(KIND, {"partner_id": number}, ignore_result=False)
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            errors[number] = error
    threads = [threading.Thread(target=send, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return handles, errors


def test_jobs_sent_together_travel_in_one_message_and_each_handle_points_at_its_own_item():
    publish = Recorder()
    handles, errors = submit_from_threads(Coalescer(publish, None, linger_s=0.2, max_batch=100), 10)

    assert errors == [None] * 10
    assert [len(items) for items in publish.messages] == [10]
    for number, handle in enumerate(handles):
        assert handle.message_id == "message-1"
        assert publish.messages[0][handle.index] == {"partner_id": number}


def test_a_full_batch_is_sent_at_once_and_the_next_job_opens_another():
    publish = Recorder()
    handles, errors = submit_from_threads(Coalescer(publish, None, linger_s=0.3, max_batch=3), 7)

    assert errors == [None] * 7
    assert sorted(len(items) for items in publish.messages) == [1, 3, 3]
    sent = sorted(item["partner_id"] for items in publish.messages for item in items)
    assert sent == list(range(7))
    alone = [handle for handle in handles if handle.index is None]
    assert len(alone) == 1  # the job left over travelled as the plain job


def test_jobs_sent_while_a_batch_is_published_gather_into_the_next_without_a_linger():
    publish = Recorder()
    coalescer = Coalescer(publish, None, linger_s=0, max_batch=100)
    publish.hold.clear()
    first = threading.Thread(target=coalescer.submit, args=(KIND, {"partner_id": 0}), kwargs={"ignore_result": False})
    first.start()
    while KIND in coalescer._open:  # the first batch closes as its publish starts
        time.sleep(0.001)
    later = [threading.Thread(target=coalescer.submit, args=(KIND, {"partner_id": n}), kwargs={"ignore_result": False})
             for n in range(1, 6)]
    for thread in later:
        thread.start()
    while len(getattr(coalescer._open.get(KIND), "items", ())) < 5:  # all five joined the next batch
        time.sleep(0.001)
    publish.hold.set()
    for thread in [first, *later]:
        thread.join(10)

    assert [sorted(item["partner_id"] for item in items) for items in publish.messages] == [[0], [1, 2, 3, 4, 5]]


def test_a_publish_that_fails_raises_in_every_call_of_its_batch_and_returns_no_handle():
    publish = Recorder(fail=ConnectionError("broker unreachable"))
    handles, errors = submit_from_threads(Coalescer(publish, None, linger_s=0.2, max_batch=100), 5)

    assert handles == [None] * 5
    assert all(isinstance(error, ConnectionError) for error in errors)


def test_a_fire_and_forget_handle_says_no_result_will_come():
    handle = Coalescer(Recorder(), None, linger_s=0, max_batch=10).submit(KIND, {"partner_id": 1}, ignore_result=True)
    with pytest.raises(ValueError, match="ignore_result"):
        handle.get(timeout=1)

"""Jobs as the tests send them: one line per action a partner or operator takes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from rewards import contract
from rewards.client import RewardsClient

RESULT_TIMEOUT_S = 60
START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def run(client: RewardsClient, task_name: str, **kwargs: Any) -> dict[str, Any]:
    """Send one job through the broker and wait for its JSON result."""
    return client.send(task_name, **kwargs).get(timeout=RESULT_TIMEOUT_S)


def run_all(client: RewardsClient, jobs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Send every job at once, then collect the results in sending order."""
    sent = [client.send(name, **kwargs) for name, kwargs in jobs]
    return [result.get(timeout=RESULT_TIMEOUT_S) for result in sent]


def at(days: float = 0) -> str:
    return (START + timedelta(days=days)).isoformat()


def start(client: RewardsClient, partner_id: int, task_id: str, day: float = 0) -> dict:
    return run(client, contract.TASK_START, partner_id=partner_id, task_id=task_id, occurred_at=at(day))


def claim(client: RewardsClient, partner_id: int, task_id: str, day: float = 0) -> dict:
    return run(client, contract.TASK_CLAIM, partner_id=partner_id, task_id=task_id, occurred_at=at(day))


def refer(client: RewardsClient, referrer_id: int, referee_id: int, day: float = 0) -> dict:
    return run(client, contract.REFERRAL_RECORD, referrer_id=referrer_id, referee_id=referee_id,
               occurred_at=at(day))


def checkin(client: RewardsClient, partner_id: int, day: float) -> dict:
    return run(client, contract.CHECKIN, partner_id=partner_id, occurred_at=at(day))


def adjust(client: RewardsClient, partner_id: int, amount: int, request_id: str,
           reason: str = "goodwill credit") -> dict:
    return run(client, contract.ADJUST, partner_id=partner_id, amount=amount, reason=reason,
               request_id=request_id)


def make_pro(client: RewardsClient, partner_id: int) -> None:
    result = run(client, contract.PARTNER_UPDATE, partner_id=partner_id,
                 pro_until="2030-01-01T00:00:00+00:00", occurred_at=at(-30))
    assert result["status"] == "applied"


def refer_friends(client: RewardsClient, referrer_id: int, referee_ids: range, day: float = 0) -> None:
    for referee_id in referee_ids:
        assert refer(client, referrer_id, referee_id, day)["status"] == "applied"

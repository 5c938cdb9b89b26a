"""The bench's check-ins: many partners checking in on a few days, in order.

Day-major order, as a morning spike looks: every partner's day N comes
before anyone's day N + 1, so each partner's next day is many messages
behind its last and the in-order (common) path is what gets measured. A
partner checks in once a day, so two batches of one day never share a
partner; with DAYS days over many partners, batches a worker runs at the
same time seldom do either.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

START = datetime(2025, 1, 1, 9, 0, tzinfo=timezone.utc)
PARTNERS_MIN = 100
DAYS = 4


def partners_for(count: int) -> int:
    """Partners enough that `count` check-ins take DAYS days."""
    return max(PARTNERS_MIN, math.ceil(count / DAYS))


def checkins(count: int, *, first_partner_id: int = 1) -> list[dict[str, object]]:
    """`count` check-in payloads, day-major over partners_for(count) partners."""
    partners = partners_for(count)
    payloads = []
    for index in range(count):
        day, offset = divmod(index, partners)
        payloads.append({"partner_id": first_partner_id + offset,
                         "occurred_at": (START + timedelta(days=day)).isoformat()})
    return payloads


def split_by_partner(payloads: list[dict[str, object]], parts: int) -> list[list[dict[str, object]]]:
    """The payloads in `parts` lists, each partner in one of them, order kept."""
    shares: list[list[dict[str, object]]] = [[] for _ in range(parts)]
    for payload in payloads:
        shares[int(payload["partner_id"]) % parts].append(payload)
    return shares


def chunks(payloads: list, size: int) -> list[list]:
    return [payloads[start:start + size] for start in range(0, len(payloads), size)]

"""The service's logic: plain generator functions, testable without Kafka or the app.

A handler receives one decoded input value and yields what to publish: ``(value, key)``, a
bare value (no key), or ``kaf.Result(value, key=..., headers=...)``. Yielding nothing
publishes nothing; yielding several values publishes several messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def add_one(event: dict[str, Any]) -> Iterator[tuple[dict[str, int], bytes]]:
    """Turn ``{"number": n}`` into ``{"result": n + 1}``, keyed ``bytes(n)``.

    The key is the one of Kaf's original example: ``bytes(n)`` is *n* zero bytes, so equal
    numbers share a key and therefore a partition.
    """
    number = event["number"]
    yield {"result": number + 1}, bytes(number)

"""What a handler yields, and what Kaf hands to hooks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

Key = bytes | str | None
HeaderValue = str | bytes | None
Headers = dict[str, HeaderValue] | Sequence[tuple[str, HeaderValue]]


class Result(NamedTuple):
    """One output of a handler: yield ``Result(value, key, headers)`` to set headers.

    A handler may also yield ``(value, key)`` or a bare value. Yield a ``Result`` when the value
    itself is a 2-tuple, so it is not mistaken for ``(value, key)``.
    """

    value: Any
    key: Key = None
    headers: Headers | None = None

"""The only module that creates confluent-kafka clients.

Config merge order: Kaf's defaults < the user's config < the keys Kaf must control.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer

logger = logging.getLogger("kaf")

CONSUMER_DEFAULTS: dict[str, Any] = {
    # A new consumer group starts at the beginning: at-least-once, not at-most-once.
    "auto.offset.reset": "earliest",
}
# Kaf commits offsets itself, and only once the outputs are delivered.
CONSUMER_CONTROLLED: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
}
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "linger.ms": 5,
}


def merge(
    defaults: Mapping[str, Any], user: Mapping[str, Any], controlled: Mapping[str, Any]
) -> dict[str, Any]:
    """Return defaults < user < controlled, logging user keys that Kaf overrides."""
    for key, value in controlled.items():
        if key in user and str(user[key]).lower() != str(value).lower():
            logger.warning("ignoring %s=%s: Kaf sets %s=%s", key, user[key], key, value)
    return {**defaults, **user, **controlled}


class Throttle:
    """True at most once per ``seconds`` for each key: keeps repeated waiting messages readable."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last: dict[Any, float] = {}

    def __call__(self, key: Any = None) -> bool:
        now = time.monotonic()
        if now - self.last.get(key, -self.seconds) < self.seconds:
            return False
        if len(self.last) > 1000:  # bounded, whatever the keys
            self.last.clear()
        self.last[key] = now
        return True


class _ErrorLog:
    """librdkafka's error callback: say what we wait for, at most every few seconds per error."""

    def __init__(self, role: str, servers: str, every: float = 10.0) -> None:
        self.role = role
        self.servers = servers
        self.due = Throttle(every)

    def __call__(self, err: KafkaError) -> None:
        if not self.due(err.code()):
            return
        if err.fatal():
            logger.error("%s client fatal error: %s", self.role, err.str())
        else:
            logger.warning(
                "waiting for the %s broker(s) %s: %s (retrying)", self.role, self.servers, err.str()
            )


_DIGITS = re.compile(r"\d+")


class _Repeats(logging.Filter):
    """Let each kind of librdkafka log line through at most once every ``every`` seconds.

    While a broker is down librdkafka logs every reconnect attempt, up to twenty lines a second
    (seen in tests/test_faults.py); the error callback already says what Kaf is waiting for.
    Lines that differ only in their numbers (ports, milliseconds) are the same kind.
    """

    def __init__(self, every: float = 10.0) -> None:
        super().__init__()
        self.due = Throttle(every)

    def filter(self, record: logging.LogRecord) -> bool:
        return self.due(_DIGITS.sub("#", record.getMessage()))


_librdkafka_logger = logging.getLogger("kaf.librdkafka")
_librdkafka_logger.addFilter(_Repeats())


def _common(config: Mapping[str, Any], role: str) -> dict[str, Any]:
    return {
        "error_cb": _ErrorLog(role, str(config.get("bootstrap.servers", "?"))),
        "logger": _librdkafka_logger,
    }


def make_consumer(name: str, config: Mapping[str, Any], on_commit: Callable[..., None]) -> Any:
    settings = merge({**CONSUMER_DEFAULTS, "client.id": name}, config, CONSUMER_CONTROLLED)
    return Consumer({**settings, **_common(settings, "consumer"), "on_commit": on_commit})


def make_producer(name: str, config: Mapping[str, Any]) -> Any:
    settings = merge({**PRODUCER_DEFAULTS, "client.id": name}, config, {})
    return Producer({**settings, **_common(settings, "producer")})

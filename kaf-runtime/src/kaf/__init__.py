"""Kaf: a small, synchronous framework for Kafka consume -> transform -> produce services."""

from __future__ import annotations

from kaf.app import KafkaApp
from kaf.errors import ConfigError, KafError, SetupError
from kaf.message import Result

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "KafError",
    "KafkaApp",
    "Result",
    "SetupError",
    "__version__",
]

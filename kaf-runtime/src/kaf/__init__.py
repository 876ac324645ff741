"""Kaf: a small, synchronous framework for Kafka consume -> transform -> produce services."""

from __future__ import annotations

from kaf.errors import ConfigError, KafError, SetupError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "KafError",
    "SetupError",
    "__version__",
]

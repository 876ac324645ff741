"""Kaf: a small, synchronous framework for Kafka consume -> transform -> produce services."""

from __future__ import annotations

from kaf.app import KafkaApp
from kaf.config import config_from_env
from kaf.errors import ConfigError, DecodeError, DeliveryError, KafError, SetupError
from kaf.eventhubs import eventhubs_config
from kaf.message import Result

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DecodeError",
    "DeliveryError",
    "KafError",
    "KafkaApp",
    "Result",
    "SetupError",
    "__version__",
    "config_from_env",
    "eventhubs_config",
]

"""Exceptions raised by Kaf.

    KafError                  root of everything Kaf raises
    ├── ConfigError           a configuration value is missing or invalid (also a ValueError)
    ├── SetupError            the app is wired wrongly: bad decorator arguments, a topic
    │                         registered twice, registering after run() (also a ValueError)
    ├── DecodeError           an input cannot be decoded in the handler's ``accepts`` format
    │                         (also a ValueError)
    └── DeliveryError         an output was refused for good, e.g. larger than the broker accepts

Errors inside the run loop (a handler raising, a DecodeError, a DeliveryError) are not raised:
they are logged, passed to ``on_error`` hooks and, if configured, dead-lettered.
"""

from __future__ import annotations


class KafError(Exception):
    """Root of every exception Kaf raises."""


class ConfigError(KafError, ValueError):
    """A configuration value is missing or invalid; the message names it and never its secret."""


class SetupError(KafError, ValueError):
    """The app is wired wrongly; raised before anything connects, the message says the fix."""


class DecodeError(KafError, ValueError):
    """An input value cannot be decoded in the handler's ``accepts`` format; given to on_error."""


class DeliveryError(KafError):
    """An output was refused for good (e.g. larger than the broker accepts); given to on_error."""

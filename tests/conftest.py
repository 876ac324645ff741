"""Session fixtures: embedded brokers, real Tansu processes started and stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kaf.testing import EmbeddedBroker


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="session")
def broker2() -> Iterator[EmbeddedBroker]:
    """A second, independent cluster: for consumer and producer on different brokers."""
    with EmbeddedBroker() as b:
        yield b

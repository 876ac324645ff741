"""TLS and SASL/PLAIN in front of an embedded broker, for SSL and SASL_SSL tests.

Tansu 0.6 serves plaintext only: ``--cert``/``--key`` are accepted but the listener stays plain
TCP (and ``--cert`` with ``--key`` is refused as conflicting); its SASL offers SCRAM only, and
users can only be created while authentication is off, in memory storage that does not survive
a restart. So the tests put ``FrontDoor`` in front of it, as Event Hubs' gateway sits in front of
its brokers: it terminates TLS with a throwaway CA made by the ``openssl`` CLI, optionally
performs the SASL/PLAIN handshake itself (checking username and password), then relays the
connection byte for byte to the broker, whose advertised listener is the front door.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from kaf.testing import EmbeddedBroker

SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
UNSUPPORTED_SASL_MECHANISM = 33
SASL_AUTHENTICATION_FAILED = 58


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path  # encrypted with CLIENT_KEY_PASSWORD


CLIENT_KEY_PASSWORD = "client-key-passphrase"


def make_certs(directory: Path, *, names: str = "DNS:localhost,IP:127.0.0.1") -> Certs:
    """Create a CA, a server certificate for ``names`` (subjectAltName) and a client certificate.

    All valid for a day; the client's key is encrypted with ``CLIENT_KEY_PASSWORD``.
    """
    openssl = shutil.which("openssl")
    assert openssl, "the TLS tests need the openssl command (Debian: apt-get install -y openssl)"
    directory.mkdir(parents=True, exist_ok=True)

    def run(command: str) -> None:
        subprocess.run([openssl, *command.split()], cwd=directory, check=True, capture_output=True)

    run(
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=kaf-test-CA -keyout ca.key -out ca.pem"
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
    )
    (directory / "server.ext").write_text(
        f"subjectAltName={names}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    (directory / "client.ext").write_text(
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
    )
    run("req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr")
    run(
        f"req -newkey rsa:2048 -subj /CN=kaf-client -passout pass:{CLIENT_KEY_PASSWORD}"
        " -keyout client.key -out client.csr"
    )
    for name in ("server", "client"):
        run(
            f"x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1"
            f" -extfile {name}.ext -out {name}.pem"
        )
    return Certs(
        ca=directory / "ca.pem",
        cert=directory / "server.pem",
        key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )


def _string(data: bytes, at: int) -> tuple[str | None, int]:
    (size,) = struct.unpack_from(">h", data, at)
    if size < 0:
        return None, at + 2
    return data[at + 2 : at + 2 + size].decode(), at + 2 + size


def _frame(correlation_id: int, body: bytes) -> bytes:
    payload = struct.pack(">i", correlation_id) + body
    return struct.pack(">i", len(payload)) + payload


class FrontDoor:
    """TLS (and, with ``users``, SASL/PLAIN) on 127.0.0.1:``port``, relaying to ``upstream``.

    With ``client_certs`` the TLS handshake requires a client certificate signed by the CA.
    Counts what happened, for tests to assert on: ``handshakes`` (TLS), ``logins`` (accepted
    SASL logins), ``refused`` (wrong user or password), ``largest_request`` (bytes, with its
    size field: what Event Hubs limits to 1,046,528); ``errors`` lists protocol surprises.
    """

    def __init__(
        self,
        upstream: str | None,
        certs: Certs,
        *,
        users: Mapping[str, str] | None = None,
        client_certs: bool = False,
    ) -> None:
        self.upstream = upstream
        self.port = 0  # chosen by the OS in start()
        self.users = dict(users) if users is not None else None
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certs.cert, certs.key)
        if client_certs:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(certs.ca)
        self.handshakes = 0
        self.logins = 0
        self.refused = 0
        self.largest_request = 0
        self.errors: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(lambda loop, ctx: None)  # clients hang up rudely
        self._thread = threading.Thread(target=self._loop.run_forever, name="front-door")
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FrontDoor:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0.05)  # let the aborted transports release their sockets

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FrontDoor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1  # start_server calls back once the TLS handshake succeeded
        assert self.upstream is not None
        host, port = self.upstream.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self._writers |= {writer, up_writer}
        try:
            if self.users is None or await self._login(reader, writer, up_reader, up_writer):
                await asyncio.gather(
                    self._requests(reader, up_writer), self._pump(up_reader, writer)
                )
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Relay the client's requests one by one, measuring them."""
        try:
            while header := await reader.read(4):
                header += await reader.readexactly(4 - len(header))
                request = await reader.readexactly(struct.unpack(">i", header)[0])
                self.largest_request = max(self.largest_request, 4 + len(request))
                writer.write(header + request)
                await writer.drain()
        finally:
            writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def _login(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer SaslHandshake and SaslAuthenticate; relay what comes before (ApiVersions)."""
        assert self.users is not None
        while True:
            header = await reader.readexactly(4)
            request = await reader.readexactly(struct.unpack(">i", header)[0])
            api_key, api_version, correlation_id = struct.unpack_from(">hhi", request)
            _, at = _string(request, 8)  # client_id
            if api_key == SASL_HANDSHAKE:
                mechanism, _ = _string(request, at)
                error = 0 if mechanism == "PLAIN" else UNSUPPORTED_SASL_MECHANISM
                body = struct.pack(">hih", error, 1, 5) + b"PLAIN"
                writer.write(_frame(correlation_id, body))
                await writer.drain()
                if error:
                    return False
            elif api_key == SASL_AUTHENTICATE:
                if api_version > 1:
                    self.errors.append(f"SaslAuthenticate v{api_version} is not implemented")
                    return False
                (size,) = struct.unpack_from(">i", request, at)
                _, user, password = request[at + 4 : at + 4 + size].split(b"\0")
                ok = self.users.get(user.decode()) == password.decode()
                if ok:  # counted before answering: the client may act on the answer at once
                    self.logins += 1
                else:
                    self.refused += 1
                message = b"" if ok else b"Invalid username or password"
                body = struct.pack(
                    ">hh", 0 if ok else SASL_AUTHENTICATION_FAILED, -1 if ok else len(message)
                )
                body += message + struct.pack(">i", 0)  # no auth bytes back
                if api_version >= 1:
                    body += struct.pack(">q", 0)  # session_lifetime_ms: no re-authentication
                writer.write(_frame(correlation_id, body))
                await writer.drain()
                return ok
            else:  # ApiVersions: the broker answers it
                up_writer.write(header + request)
                await up_writer.drain()
                size_bytes = await up_reader.readexactly(4)
                response = await up_reader.readexactly(struct.unpack(">i", size_bytes)[0])
                writer.write(size_bytes + response)
                await writer.drain()


@contextmanager
def broker_behind_door(certs: Certs, **options: Any) -> Iterator[FrontDoor]:
    """Start a ``FrontDoor`` (``options`` as for it), then a broker advertising the door.

    The door stops first: Tansu waits for open connections before it exits.
    """
    door = FrontDoor(None, certs, **options).start()
    broker = EmbeddedBroker(advertised=door.bootstrap_servers)
    try:
        broker.start()
        door.upstream = broker.bootstrap_servers
        yield door
    finally:
        door.stop()
        broker.stop()

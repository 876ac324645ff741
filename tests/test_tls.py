"""SSL and SASL_SSL end to end: real TLS, a real SASL/PLAIN login, a real broker behind them.

The TLS and the login are served by ``tests.tlstools.FrontDoor`` (Tansu 0.6 speaks neither;
see that module), with a CA created for the test session.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kaf import KafkaApp
from kaf.config import config_from_env
from kaf.eventhubs import eventhubs_config
from tests.kafkatools import FAST_GROUP, running, unique
from tests.tlstools import CLIENT_KEY_PASSWORD, Certs, FrontDoor, broker_behind_door, make_certs

KEY = "tlsKEYtlsKEYtlsKEYtlsKEYtlsKEYtlsKEY012345="
CONNECTION = (
    f"Endpoint=sb://kaf-test.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={KEY}"
)
USERS = {"$ConnectionString": CONNECTION}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def ssl_door(certs: Certs) -> Iterator[FrontDoor]:
    with broker_behind_door(certs) as door:
        yield door


@pytest.fixture(scope="module")
def sasl_door(certs: Certs) -> Iterator[FrontDoor]:
    with broker_behind_door(certs, users=USERS) as door:
        yield door


def round_trip(config: dict[str, Any], *, timeout: float = 10.0) -> bytes:
    """Produce one message to a new topic with ``config`` and read it back; return its value."""
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    value = uuid.uuid4().hex.encode()
    producer = Producer(config)
    delivered: list[Any] = []
    producer.produce(topic, value, partition=0, on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(timeout) == 0 and delivered == [None]
    consumer = Consumer({**config, "group.id": topic, "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                received = msg.value()
                assert received is not None
                return received
        raise AssertionError(f"nothing read back from {topic} in {timeout}s")
    finally:
        consumer.close()


def refused(config: dict[str, Any], expect: Callable[[KafkaError], bool]) -> list[KafkaError]:
    """Try to produce with ``config``; return the client errors once one matches ``expect``.

    Fails if the message is delivered or no matching error comes within 10 s.
    """
    errors: list[KafkaError] = []
    delivered: list[Any] = []
    producer = Producer({**config, "error_cb": errors.append})
    producer.produce("never", b"x", on_delivery=lambda err, msg: delivered.append(err))
    deadline = time.monotonic() + 10
    while not any(expect(e) for e in errors) and time.monotonic() < deadline:
        producer.poll(0.1)
    producer.purge()
    producer.flush(1)
    assert any(expect(e) for e in errors), errors
    assert all(err is not None for err in delivered), "the message was delivered"
    return errors


def test_ssl_round_trip(ssl_door: FrontDoor, certs: Certs) -> None:
    handshakes = ssl_door.handshakes
    config = {
        "bootstrap.servers": ssl_door.bootstrap_servers,
        "security.protocol": "SSL",
        "ssl.ca.location": str(certs.ca),
    }
    assert len(round_trip(config)) == 32
    assert ssl_door.handshakes > handshakes


def test_ssl_refuses_a_broker_certificate_from_an_unknown_ca(ssl_door: FrontDoor) -> None:
    handshakes = ssl_door.handshakes
    refused(
        {"bootstrap.servers": ssl_door.bootstrap_servers, "security.protocol": "SSL"},
        lambda e: "certificate verify failed" in e.str(),
    )
    assert ssl_door.handshakes == handshakes


def test_ssl_checks_the_broker_host_name(tmp_path: Path) -> None:
    other = make_certs(tmp_path, names="DNS:broker.example.com")
    with broker_behind_door(other) as door:
        config = {
            "bootstrap.servers": door.bootstrap_servers,
            "security.protocol": "SSL",
            "ssl.ca.location": str(other.ca),
        }
        refused(config, lambda e: "certificate verify failed" in e.str())
        assert door.handshakes == 0
        # The same certificate passes once host name checking is off: the name was the problem.
        assert len(round_trip({**config, "ssl.endpoint.identification.algorithm": "none"})) == 32


def test_ssl_with_a_client_certificate(certs: Certs) -> None:
    """Mutual TLS: the client's certificate, with its key encrypted by ``ssl.key.password``."""
    with broker_behind_door(certs, client_certs=True) as door:
        config = {
            "bootstrap.servers": door.bootstrap_servers,
            "security.protocol": "SSL",
            "ssl.ca.location": str(certs.ca),
        }
        # TLS 1.3: the client sees the refusal only as the server hanging up.
        gone = (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)
        refused(config, lambda e: e.code() in gone)
        assert door.handshakes == 0
        config |= {
            "ssl.certificate.location": str(certs.client_cert),
            "ssl.key.location": str(certs.client_key),
            "ssl.key.password": CLIENT_KEY_PASSWORD,
        }
        assert len(round_trip(config)) == 32
        assert door.handshakes > 0


def test_sasl_ssl_round_trip_with_the_event_hubs_config(sasl_door: FrontDoor, certs: Certs) -> None:
    """What ``eventhubs_config`` produces logs in; only the address and the CA are local."""
    logins = sasl_door.logins
    for role in ("producer", "consumer"):
        config = eventhubs_config(CONNECTION, role=role)
        config.update(
            {"bootstrap.servers": sasl_door.bootstrap_servers, "ssl.ca.location": str(certs.ca)}
        )
        assert len(round_trip(config)) == 32
    assert sasl_door.logins > logins
    assert sasl_door.errors == []


def test_sasl_ssl_from_the_environment(sasl_door: FrontDoor, certs: Certs) -> None:
    """The one-line .env plus two local overrides: explicit variables beat the expansion."""
    env = {
        "KAF_PRODUCER_EVENTHUBS_CONNECTION_STRING": CONNECTION,
        "KAF_PRODUCER_BOOTSTRAP_SERVERS": sasl_door.bootstrap_servers,
        "KAF_PRODUCER_SSL_CA_LOCATION": str(certs.ca),
    }
    config = config_from_env("KAF_PRODUCER_", env=env)
    assert config["security.protocol"] == "SASL_SSL"
    assert len(round_trip(config)) == 32


def test_sasl_ssl_wrong_password_is_refused(sasl_door: FrontDoor, certs: Certs) -> None:
    before = sasl_door.refused
    config = eventhubs_config(CONNECTION.replace(KEY, "wrong" + KEY[5:]), role="producer")
    config.update(
        {"bootstrap.servers": sasl_door.bootstrap_servers, "ssl.ca.location": str(certs.ca)}
    )
    refused(config, lambda e: e.code() == KafkaError._AUTHENTICATION)
    assert sasl_door.refused > before


def test_an_oversize_output_is_refused_before_sending(sasl_door: FrontDoor, certs: Certs) -> None:
    """With the Event Hubs producer config, an output over 1 MB fails at once, the rest flows,
    and no request the service would see exceeds its 1,046,528-byte limit."""
    local = {"bootstrap.servers": sasl_door.bootstrap_servers, "ssl.ca.location": str(certs.ca)}
    source, sink = unique("big-in"), unique("big-out")
    admin = AdminClient({**eventhubs_config(CONNECTION, role="producer"), **local})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (source, sink)]).values():
        future.result(10)
    sizes = [999_000, 1_000_001, 10, 999_000, 999_000, 999_000]
    producer = Producer({**eventhubs_config(CONNECTION, role="producer"), **local})
    for size in sizes:
        producer.produce(source, json.dumps(size).encode(), partition=0)
    assert producer.flush(10) == 0

    app = KafkaApp(
        unique("big"),
        consumer_config={
            **eventhubs_config(CONNECTION, role="consumer"),
            **local,
            **FAST_GROUP,
            "group.id": unique("big"),
        },
        producer_config={**eventhubs_config(CONNECTION, role="producer"), **local},
        consumer_timeout=0.2,
        commit_interval=0.5,
    )
    errors: list[tuple[int, str]] = []
    app.on_error(lambda msg, exc: errors.append((json.loads(msg.value()), str(exc))))
    app.process(topic=source, publish_to=sink, returns="bytes")(lambda size: [b"x" * size])
    reader = Consumer(
        {**eventhubs_config(CONNECTION, role="consumer"), **local, "group.id": unique("r")}
    )
    reader.assign([TopicPartition(sink, 0, 0)])
    received: list[int] = []
    started = time.monotonic()
    try:
        with running(app):
            while len(received) < 5 and time.monotonic() - started < 30:
                msg = reader.poll(0.2)
                if msg is not None and msg.error() is None:
                    received.append(len(msg.value()))
    finally:
        reader.close()
    assert received == [999_000, 10, 999_000, 999_000, 999_000]
    assert len(errors) == 1 and errors[0][0] == 1_000_001
    assert "MSG_SIZE_TOO_LARGE" in errors[0][1] or "too large" in errors[0][1].lower()
    assert 999_000 < sasl_door.largest_request <= 1_046_528
    assert time.monotonic() - started < 30

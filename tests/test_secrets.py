"""A known secret never shows up: not in redacted configs, reprs, errors, `kaf config`, or logs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kaf import KafkaApp
from kaf.config import config_from_env, is_secret, redact, scrub
from kaf.errors import ConfigError
from kaf.eventhubs import eventhubs_config, parse_connection_string
from tests.kafkatools import running, wait_for
from tests.tlstools import Certs, FrontDoor, broker_behind_door, make_certs

KEY = "SECRETsecretSECRETsecretSECRETsecret0123456="
CONNECTION = f"Endpoint=sb://kaf-secret.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={KEY}"
KAF = Path(sys.executable).with_name("kaf")


def clean_env(**variables: str) -> dict[str, str]:
    """The process environment without KAF_ variables, plus ``variables``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("KAF_")}, **variables}


def assert_no_secret(text: str) -> None:
    assert KEY not in text and KEY[:16] not in text and KEY[-16:] not in text


# -- redact and scrub -------------------------------------------------------------------------


def test_redact_replaces_every_secret_and_keeps_the_rest() -> None:
    config = {
        "bootstrap.servers": "b:9093",
        "sasl.username": "$ConnectionString",
        "sasl.password": "p1",
        "ssl.key.password": "p2",
        "ssl.keystore.password": "p3",
        "ssl.key.pem": "-----BEGIN PRIVATE KEY-----",
        "ssl.key.location": "/etc/kaf/key.pem",
        "ssl.certificate.pem": "-----BEGIN CERTIFICATE-----",
        "sasl.oauthbearer.config": "principal=admin",
        "sasl.oauthbearer.client.secret": "p4",
        "sasl.oauthbearer.client.id": "kaf",
        "sasl.oauthbearer.token.endpoint.url": "https://login.example.com/token",
        "sasl.oauthbearer.assertion.private.key.passphrase": "p5",
        "eventhubs.connection.string": "p6",
        "my.api.token": "p7",
        "client.id": CONNECTION,  # a key in the wrong place is still a key
        "empty.password": "",
        "linger.ms": 5,
    }
    assert redact(config) == {
        "bootstrap.servers": "b:9093",
        "sasl.username": "$ConnectionString",
        "sasl.password": "***",
        "ssl.key.password": "***",
        "ssl.keystore.password": "***",
        "ssl.key.pem": "***",
        "ssl.key.location": "/etc/kaf/key.pem",
        "ssl.certificate.pem": "-----BEGIN CERTIFICATE-----",
        "sasl.oauthbearer.config": "***",
        "sasl.oauthbearer.client.secret": "***",
        "sasl.oauthbearer.client.id": "kaf",
        "sasl.oauthbearer.token.endpoint.url": "https://login.example.com/token",
        "sasl.oauthbearer.assertion.private.key.passphrase": "***",
        "eventhubs.connection.string": "***",
        "my.api.token": "***",
        "client.id": "***",
        "empty.password": "",
        "linger.ms": 5,
    }
    assert config["sasl.password"] == "p1"  # a copy: the original is untouched


def test_is_secret() -> None:
    assert is_secret("SASL.PASSWORD")
    assert not is_secret("sasl.username", "$ConnectionString")
    assert is_secret("anything", f"x;sharedaccesskey = {KEY}")


def test_scrub_removes_config_secrets_and_event_hubs_keys_from_text() -> None:
    config = eventhubs_config(CONNECTION, role="producer")
    text = f"failed with {config}; retrying {CONNECTION!r} and SharedAccessSignature=sig123&se=1"
    scrubbed = scrub(text, config, {"ssl.key.password": "tiny"})
    assert_no_secret(scrubbed)
    assert "sig123" not in scrubbed
    assert "'sasl.password': '***'" in scrubbed and "SharedAccessSignature=***" in scrubbed
    assert scrub("nothing secret", {"sasl.password": ""}) == "nothing secret"


def test_connection_string_repr_and_errors_hide_the_key() -> None:
    assert_no_secret(repr(parse_connection_string(CONNECTION)))
    for broken in (
        CONNECTION.replace("Endpoint=sb://", "Endpoint=https://"),
        CONNECTION.replace("SharedAccessKeyName=Root;", ""),
        CONNECTION.replace("SharedAccessKey=", "SharedAccessKey:"),
        CONNECTION + ";SharedAccessSignature=sig",
        CONNECTION.replace(";", ",", 1),
    ):
        with pytest.raises(ConfigError) as caught:
            config_from_env(
                "KAF_PRODUCER_", env={"KAF_PRODUCER_EVENTHUBS_CONNECTION_STRING": broken}
            )
        assert "KAF_PRODUCER_EVENTHUBS_CONNECTION_STRING" in str(caught.value)
        assert_no_secret(str(caught.value))


def test_kaf_config_prints_no_secret(tmp_path: Path) -> None:
    env = clean_env(
        KAF_CONSUMER_EVENTHUBS_CONNECTION_STRING=CONNECTION,
        KAF_CONSUMER_GROUP_ID="orders",
        KAF_PRODUCER_EVENTHUBS_CONNECTION_STRING=CONNECTION,
        KAF_PRODUCER_SSL_KEY_PASSWORD=KEY,
    )
    done = subprocess.run(
        [KAF, "config"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert_no_secret(done.stdout + done.stderr)
    shown = json.loads(done.stdout)
    assert (
        shown["consumer"]["sasl.password"] == "***"
        and shown["producer"]["ssl.key.password"] == "***"
    )
    assert shown["producer"]["bootstrap.servers"] == "kaf-secret.servicebus.windows.net:9093"


def test_kaf_config_error_prints_no_secret(tmp_path: Path) -> None:
    env = clean_env(KAF_CONSUMER_EVENTHUBS_CONNECTION_STRING=CONNECTION.replace("Root;", ""))
    done = subprocess.run(
        [KAF, "config"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "KAF_CONSUMER_EVENTHUBS_CONNECTION_STRING is not a valid" in done.stderr
    assert_no_secret(done.stdout + done.stderr)


# -- a full run over SASL_SSL, logs captured ---------------------------------------------------


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FrontDoor, Certs]]:
    """A broker behind TLS and a SASL/PLAIN login that accepts exactly the Event Hubs login."""
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    with broker_behind_door(certs, users={"$ConnectionString": CONNECTION}) as front:
        yield front, certs


def set_kaf_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, door: FrontDoor, certs: Certs, connection: str
) -> None:
    """The one-line Event Hubs .env, pointed at the local front door, for both clients."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("KAF_"):
            monkeypatch.delenv(name)
    for prefix in ("KAF_CONSUMER_", "KAF_PRODUCER_"):
        monkeypatch.setenv(f"{prefix}EVENTHUBS_CONNECTION_STRING", connection)
        monkeypatch.setenv(f"{prefix}BOOTSTRAP_SERVERS", door.bootstrap_servers)
        monkeypatch.setenv(f"{prefix}SSL_CA_LOCATION", str(certs.ca))
        monkeypatch.setenv(f"{prefix}DEBUG", "conf,security")  # librdkafka's most talkative
    monkeypatch.setenv("KAF_CONSUMER_GROUP_ID", f"secret-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("KAF_CONSUMER_SESSION_TIMEOUT_MS", "6000")
    monkeypatch.setenv("KAF_CONSUMER_HEARTBEAT_INTERVAL_MS", "500")


def client(door: FrontDoor, certs: Certs, role: str) -> dict[str, Any]:
    config = eventhubs_config(CONNECTION, role=role)  # type: ignore[arg-type]
    return {**config, "bootstrap.servers": door.bootstrap_servers, "ssl.ca.location": str(certs.ca)}


def test_a_full_run_logs_no_secret(
    door: tuple[FrontDoor, Certs],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    front, certs = door
    source, sink = f"in-{uuid.uuid4().hex[:8]}", f"out-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(client(front, certs, "producer"))
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (source, sink)]).values():
        future.result(10)
    producer = Producer(client(front, certs, "producer"))
    for n in range(5):
        producer.produce(source, json.dumps({"n": n}).encode(), partition=0)
    producer.produce(source, b"not json", partition=0)  # logged as undecodable input
    assert producer.flush(10) == 0

    set_kaf_env(monkeypatch, tmp_path, front, certs, CONNECTION)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="kaf")  # Kaf would set INFO, hiding librdkafka's debug
    app = KafkaApp("secret-app", consumer_timeout=0.2, commit_interval=0.5)

    @app.process(topic=source, publish_to=sink, accepts="json", returns="json")
    def double(value: dict[str, int]) -> Any:
        if value["n"] == 3:
            raise RuntimeError("handler failure, logged with its traceback")
        yield {"n": value["n"] * 2}

    reader = Consumer({**client(front, certs, "consumer"), "group.id": "reader"})
    reader.assign([TopicPartition(sink, 0, 0)])
    outputs: list[Any] = []
    logins = front.logins
    try:
        with running(app):
            deadline = time.monotonic() + 30
            while len(outputs) < 4 and time.monotonic() < deadline:
                msg = reader.poll(0.2)
                if msg is not None and msg.error() is None:
                    outputs.append(json.loads(msg.value()))
    finally:
        reader.close()
    assert sorted(o["n"] for o in outputs) == [0, 2, 4, 8]
    assert front.logins >= logins + 2  # the app's consumer and producer logged in

    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert "[redacted]" in logged  # librdkafka's debug=conf went through the logs
    assert "handler failure" in logged
    captured = capfd.readouterr()
    assert_no_secret(logged + captured.out + captured.err + repr(app))


def test_a_refused_login_logs_no_secret(
    door: tuple[FrontDoor, Certs],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    front, certs = door
    set_kaf_env(monkeypatch, tmp_path, front, certs, CONNECTION.replace("SECRET", "SECRXT", 1))
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="kaf")
    app = KafkaApp("refused-app", consumer_timeout=0.2)
    app.process(topic="anything", publish_to=None)(lambda value: None)
    refused = front.refused
    with running(app):
        wait_for(lambda: front.refused > refused, timeout=15)
        wait_for(lambda: "Invalid username or password" in caplog.text, timeout=15)
    captured = capfd.readouterr()
    text = caplog.text + captured.out + captured.err
    assert "SECRXTsecret" not in text and KEY[16:32] not in text

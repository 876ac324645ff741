"""Environment variables and .env files to librdkafka configs, and the checks before connecting."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from kaf.config import (
    check_consumer,
    check_producer,
    config_from_env,
    env_name,
    setting_name,
)
from kaf.errors import ConfigError

KEY = "c0nf1gKEYc0nf1gKEYc0nf1gKEYc0nf1gKEY01234="
CONNECTION = f"Endpoint=sb://orders-ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={KEY}"
EVENTHUBS = "orders-ns.servicebus.windows.net:9093"


@pytest.fixture
def no_kaf_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Run in an empty directory with no KAF_ variables in the environment."""
    for name in list(os.environ):
        if name.startswith("KAF_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- mapping ----------------------------------------------------------------------------------


def test_variables_map_to_lower_case_dotted_keys() -> None:
    env = {
        "KAF_CONSUMER_BOOTSTRAP_SERVERS": "a:9092,b:9092",
        "KAF_CONSUMER_GROUP_ID": "orders",
        "KAF_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "KAF_CONSUMER_LOG__LEVEL": "7",  # a double underscore is an underscore
        "KAF_PRODUCER_ACKS": "all",  # another prefix
        "KAF_CONSUMER_": "no key",
        "KAF_CONSUMER_AUTO_OFFSET_RESET": "",  # empty counts as unset
        "kaf_consumer_client_id": "lower-case names are not ours",
    }
    assert config_from_env("KAF_CONSUMER_", env=env) == {
        "bootstrap.servers": "a:9092,b:9092",
        "group.id": "orders",
        "session.timeout.ms": "6000",
        "log_level": "7",
    }


@pytest.mark.parametrize(
    "key", ["bootstrap.servers", "group.id", "log_level", "enabled_events", "ssl.ca.location"]
)
def test_env_name_is_the_inverse_of_the_mapping(key: str) -> None:
    name = env_name("KAF_PRODUCER_", key)
    assert config_from_env("KAF_PRODUCER_", env={name: "x"}) == {key: "x"}


def test_env_name_examples() -> None:
    assert env_name("KAF_CONSUMER_", "session.timeout.ms") == "KAF_CONSUMER_SESSION_TIMEOUT_MS"
    assert env_name("KAF_CONSUMER_", "log_level") == "KAF_CONSUMER_LOG__LEVEL"


def test_dotenv_file_is_read_and_the_real_environment_wins(
    no_kaf_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (no_kaf_env / ".env").write_text(
        "# comment\n"
        "KAF_PRODUCER_BOOTSTRAP_SERVERS=from-file:9092\n"
        "KAF_PRODUCER_LINGER_MS=50\n"
        "export KAF_PRODUCER_CLIENT_ID='quoted id'\n"
    )
    monkeypatch.setenv("KAF_PRODUCER_LINGER_MS", "5")
    before = dict(os.environ)
    assert config_from_env("KAF_PRODUCER_") == {
        "bootstrap.servers": "from-file:9092",
        "linger.ms": "5",
        "client.id": "quoted id",
    }
    assert dict(os.environ) == before  # nothing was loaded into the process environment


def test_another_env_file_none_and_a_missing_file(
    no_kaf_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (no_kaf_env / ".env").write_text("KAF_PRODUCER_LINGER_MS=50\n")
    (no_kaf_env / "prod.env").write_text("KAF_PRODUCER_LINGER_MS=20\n")
    assert config_from_env("KAF_PRODUCER_", env_file="prod.env") == {"linger.ms": "20"}
    assert config_from_env("KAF_PRODUCER_", env_file=no_kaf_env / "prod.env") == {"linger.ms": "20"}
    assert config_from_env("KAF_PRODUCER_", env_file=None) == {}
    assert config_from_env("KAF_PRODUCER_", env_file="missing.env") == {}


def test_an_explicit_env_mapping_ignores_the_process_and_the_file(
    no_kaf_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (no_kaf_env / ".env").write_text("KAF_PRODUCER_LINGER_MS=50\n")
    monkeypatch.setenv("KAF_PRODUCER_ACKS", "1")
    assert config_from_env("KAF_PRODUCER_", env={"KAF_PRODUCER_RETRIES": "3"}) == {"retries": "3"}


def test_empty_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="prefix"):
        config_from_env("", env={})


# -- Event Hubs -------------------------------------------------------------------------------


def test_connection_string_expands_and_explicit_variables_win() -> None:
    env = {
        "KAF_CONSUMER_EVENTHUBS_CONNECTION_STRING": CONNECTION,
        "KAF_CONSUMER_GROUP_ID": "orders",
        "KAF_CONSUMER_SESSION_TIMEOUT_MS": "45000",
    }
    assert config_from_env("KAF_CONSUMER_", env=env) == {
        "bootstrap.servers": EVENTHUBS,
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "$ConnectionString",
        "sasl.password": CONNECTION,
        "socket.keepalive.enable": "true",
        "metadata.max.age.ms": "180000",
        "session.timeout.ms": "45000",
        "heartbeat.interval.ms": "3000",
        "max.poll.interval.ms": "300000",
        "group.id": "orders",
    }


def test_the_producer_prefix_gets_producer_settings() -> None:
    config = config_from_env(
        "KAF_PRODUCER_", env={"KAF_PRODUCER_EVENTHUBS_CONNECTION_STRING": CONNECTION}
    )
    assert config["request.timeout.ms"] == "60000" and config["message.max.bytes"] == "1000000"
    assert "session.timeout.ms" not in config


def test_connection_string_in_dotenv(no_kaf_env: Path) -> None:
    (no_kaf_env / ".env").write_text(f'KAF_PRODUCER_EVENTHUBS_CONNECTION_STRING="{CONNECTION}"\n')
    config = config_from_env("KAF_PRODUCER_")
    assert config["bootstrap.servers"] == EVENTHUBS and config["sasl.password"] == CONNECTION


def test_a_malformed_connection_string_names_the_variable() -> None:
    env = {"KAF_PRODUCER_EVENTHUBS_CONNECTION_STRING": f"Endpoint=sb://ns/;SharedAccessKey={KEY}"}
    with pytest.raises(ConfigError) as caught:
        config_from_env("KAF_PRODUCER_", env=env)
    assert str(caught.value).startswith("KAF_PRODUCER_EVENTHUBS_CONNECTION_STRING is not a valid")
    assert KEY not in str(caught.value)


def test_a_custom_prefix_needs_the_role_for_event_hubs() -> None:
    env = {"ORDERS_EVENTHUBS_CONNECTION_STRING": CONNECTION}
    with pytest.raises(ConfigError, match="ORDERS_EVENTHUBS_CONNECTION_STRING: pass role="):
        config_from_env("ORDERS_", env=env)
    assert config_from_env("ORDERS_", env=env, role="consumer")["session.timeout.ms"] == "30000"


# -- checks -----------------------------------------------------------------------------------

PLAIN_CONSUMER = {"bootstrap.servers": "localhost:9092", "group.id": "orders"}
EH_CONSUMER = {
    "bootstrap.servers": EVENTHUBS,
    "security.protocol": "SASL_SSL",
    "group.id": "orders",
}
EH_PRODUCER = {"bootstrap.servers": EVENTHUBS, "security.protocol": "sasl_ssl"}


def test_setting_name_names_the_variable_or_the_dict_entry() -> None:
    assert setting_name("group.id", "KAF_CONSUMER_") == "KAF_CONSUMER_GROUP_ID"
    assert setting_name("group.id", "consumer_config") == "consumer_config['group.id']"


@pytest.mark.parametrize(
    "config",
    [
        PLAIN_CONSUMER,
        {"metadata.broker.list": "localhost:9092", "group.id": "orders"},
        EH_CONSUMER,
        {**EH_CONSUMER, "group.id": "g" * 256, "session.timeout.ms": 6000},
        {**EH_CONSUMER, "session.timeout.ms": "300000"},
    ],
)
def test_valid_consumer_configs_pass(config: dict[str, Any]) -> None:
    check_consumer(config, source="consumer_config")


@pytest.mark.parametrize(
    ("config", "source", "message"),
    [
        (
            {"group.id": "g"},
            "KAF_CONSUMER_",
            "the consumer configuration has no bootstrap.servers: set KAF_CONSUMER_BOOTSTRAP_SERVERS, e.g. 'localhost:9092', or KAF_CONSUMER_EVENTHUBS_CONNECTION_STRING for Azure Event Hubs",
        ),
        (
            {"bootstrap.servers": " ", "group.id": "g"},
            "consumer_config",
            "the consumer configuration has no bootstrap.servers: set consumer_config['bootstrap.servers'], e.g. 'localhost:9092'",
        ),
        (
            {"bootstrap.servers": "localhost:9092"},
            "KAF_CONSUMER_",
            "the consumer configuration has no group.id: set KAF_CONSUMER_GROUP_ID, e.g. 'my-service' (consumers with the same group.id share the partitions)",
        ),
        (
            {**EH_CONSUMER, "group.id": "g" * 257},
            "KAF_CONSUMER_",
            "KAF_CONSUMER_GROUP_ID is 257 characters long; Azure Event Hubs allows at most 256",
        ),
        (
            {**EH_CONSUMER, "session.timeout.ms": "5999"},
            "consumer_config",
            "consumer_config['session.timeout.ms'] is 5999; Azure Event Hubs accepts 6000 to 300000 (Microsoft recommends 30000)",
        ),
        (
            {**EH_CONSUMER, "session.timeout.ms": "30s"},
            "KAF_CONSUMER_",
            "KAF_CONSUMER_SESSION_TIMEOUT_MS must be a whole number",
        ),
        (
            {**EH_CONSUMER, "security.protocol": "SSL"},
            "KAF_CONSUMER_",
            "KAF_CONSUMER_SECURITY_PROTOCOL must be SASL_SSL for Azure Event Hubs (KAF_CONSUMER_BOOTSTRAP_SERVERS is an Event Hubs namespace)",
        ),
        (
            {"bootstrap.servers": EVENTHUBS, "group.id": "g"},
            "consumer_config",
            "consumer_config['security.protocol'] must be SASL_SSL",
        ),
    ],
)
def test_invalid_consumer_configs_name_the_setting(
    config: dict[str, Any], source: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        check_consumer(config, source=source)
    assert str(caught.value).startswith(message)


def test_a_plain_kafka_consumer_is_not_held_to_event_hubs_limits() -> None:
    check_consumer(
        {**PLAIN_CONSUMER, "group.id": "g" * 300, "session.timeout.ms": 1000}, source="c"
    )


@pytest.mark.parametrize(
    "config",
    [
        {
            "bootstrap.servers": "localhost:9092",
            "compression.codec": "zstd",
            "message.max.bytes": 5_000_000,
        },
        EH_PRODUCER,
        {**EH_PRODUCER, "compression.codec": "gzip", "message.max.bytes": "1000000"},
        {**EH_PRODUCER, "compression.type": "NONE", "message.max.bytes": 500},
    ],
)
def test_valid_producer_configs_pass(config: dict[str, Any]) -> None:
    check_producer(config, source="producer_config")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {},
            "the producer configuration has no bootstrap.servers: set KAF_PRODUCER_BOOTSTRAP_SERVERS",
        ),
        (
            {**EH_PRODUCER, "compression.codec": "snappy"},
            "KAF_PRODUCER_COMPRESSION_CODEC is 'snappy'; Azure Event Hubs accepts only 'none' or 'gzip'",
        ),
        (
            {**EH_PRODUCER, "compression.type": "lz4"},
            "KAF_PRODUCER_COMPRESSION_TYPE is 'lz4'; Azure Event Hubs accepts only 'none' or 'gzip'",
        ),
        (
            {**EH_PRODUCER, "message.max.bytes": "1046528"},
            "KAF_PRODUCER_MESSAGE_MAX_BYTES is 1046528; Azure Event Hubs closes the connection on requests over 1046528 bytes, so it must be at most 1000000",
        ),
        (
            {**EH_PRODUCER, "message.max.bytes": "1MB"},
            "KAF_PRODUCER_MESSAGE_MAX_BYTES must be a whole number",
        ),
        (
            {"bootstrap.servers": EVENTHUBS, "security.protocol": "PLAINTEXT"},
            "KAF_PRODUCER_SECURITY_PROTOCOL must be SASL_SSL",
        ),
    ],
)
def test_invalid_producer_configs_name_the_variable(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_producer(config, source="KAF_PRODUCER_")
    assert str(caught.value).startswith(message)


def test_the_expanded_event_hubs_configs_pass_their_own_checks() -> None:
    env = {
        "KAF_CONSUMER_EVENTHUBS_CONNECTION_STRING": CONNECTION,
        "KAF_CONSUMER_GROUP_ID": "orders",
        "KAF_PRODUCER_EVENTHUBS_CONNECTION_STRING": CONNECTION,
    }
    check_consumer(config_from_env("KAF_CONSUMER_", env=env), source="KAF_CONSUMER_")
    check_producer(config_from_env("KAF_PRODUCER_", env=env), source="KAF_PRODUCER_")

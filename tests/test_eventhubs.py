"""Event Hubs connection strings and the librdkafka config they expand to."""

from __future__ import annotations

import pytest

from kaf.errors import ConfigError
from kaf.eventhubs import (
    ConnectionString,
    eventhubs_config,
    is_eventhubs_host,
    parse_connection_string,
)

KEY = "s3cr3tKEYs3cr3tKEYs3cr3tKEYs3cr3tKEY0123456="
NAMESPACE = f"Endpoint=sb://orders-ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={KEY}"
ENTITY = f"{NAMESPACE};EntityPath=orders"
SIGNATURE = "SharedAccessSignature sr=sb%3a%2f%2forders-ns&sig=SIGs3cr3t%3d&se=1700000000&skn=send"


def test_parse_a_namespace_connection_string() -> None:
    parsed = parse_connection_string(NAMESPACE)
    assert parsed == ConnectionString(
        host="orders-ns.servicebus.windows.net",
        key_name="RootManageSharedAccessKey",
        key=KEY,
    )
    assert parsed.namespace == "orders-ns"
    assert parsed.bootstrap_servers == "orders-ns.servicebus.windows.net:9093"
    assert parsed.entity_path is None


def test_parse_an_event_hub_connection_string_exposes_its_entity_path() -> None:
    assert parse_connection_string(ENTITY).entity_path == "orders"


def test_parse_is_lenient_about_case_spacing_quotes_and_unknown_parts() -> None:
    text = f' "endpoint=sb://orders-ns.servicebus.windows.net; sharedaccesskeyname=r ; SHAREDACCESSKEY={KEY};TransportType=Amqp;" \n'
    parsed = parse_connection_string(text)
    assert (parsed.host, parsed.key_name, parsed.key) == (
        "orders-ns.servicebus.windows.net",
        "r",
        KEY,
    )


def test_parse_a_shared_access_signature() -> None:
    parsed = parse_connection_string(
        f"Endpoint=sb://orders-ns.servicebus.windows.net/;SharedAccessSignature={SIGNATURE}"
    )
    assert parsed.signature == SIGNATURE
    assert parsed.key is None and parsed.key_name is None


def test_repr_hides_the_key_and_the_signature() -> None:
    shown = repr(parse_connection_string(ENTITY))
    assert KEY not in shown and "key='***'" in shown
    assert "orders-ns.servicebus.windows.net" in shown and "orders" in shown
    signed = parse_connection_string(
        f"Endpoint=sb://n.servicebus.windows.net/;SharedAccessSignature={SIGNATURE}"
    )
    assert "SIGs3cr3t" not in repr(signed) and "signature='***'" in repr(signed)
    assert "SIGs3cr3t" not in str(signed)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "it is empty"),
        ("  ''  ", "it is empty"),
        (f"SharedAccessKeyName=r;SharedAccessKey={KEY}", "Endpoint=sb://"),
        (
            f"Endpoint=https://orders-ns.servicebus.windows.net/;SharedAccessKeyName=r;SharedAccessKey={KEY}",
            "Endpoint must look like sb://",
        ),
        (
            f"Endpoint=sb:///;SharedAccessKeyName=r;SharedAccessKey={KEY}",
            "Endpoint must look like sb://",
        ),
        (
            "Endpoint=sb://orders-ns.servicebus.windows.net/",
            "SharedAccessKeyName and SharedAccessKey are missing",
        ),
        (
            f"Endpoint=sb://orders-ns.servicebus.windows.net/;SharedAccessKey={KEY}",
            "SharedAccessKeyName is missing",
        ),
        (
            "Endpoint=sb://orders-ns.servicebus.windows.net/;SharedAccessKeyName=r;SharedAccessKey=",
            "SharedAccessKey is missing",
        ),
        (f"{NAMESPACE};SharedAccessSignature={SIGNATURE}", "both SharedAccessSignature and"),
        (f"{NAMESPACE};SharedAccessKey={KEY}", "SharedAccessKey appears twice"),
        (f"{NAMESPACE};{KEY}", "not Name=value"),
        (
            f"Endpoint=sb://orders-ns.servicebus.windows.net/;SharedAccessKeyName=r;SharedAccessKey {KEY}",
            "not Name=value",
        ),
    ],
)
def test_a_malformed_string_names_the_source_and_problem_and_never_the_key(
    text: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_connection_string(text, source="KAF_PRODUCER_EVENTHUBS_CONNECTION_STRING")
    message = str(caught.value)
    assert message.startswith("KAF_PRODUCER_EVENTHUBS_CONNECTION_STRING is not a valid")
    assert problem in message
    assert "Shared access policies" in message  # says where to get a good one
    assert KEY not in message and KEY[:12] not in message and "SIGs3cr3t" not in message


def test_a_non_string_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="must be a string, not int"):
        parse_connection_string(42)  # type: ignore[arg-type]


def test_producer_config_is_the_sasl_login_plus_microsofts_recommendations() -> None:
    assert eventhubs_config(f"  {ENTITY}\n", role="producer") == {
        "bootstrap.servers": "orders-ns.servicebus.windows.net:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "$ConnectionString",
        "sasl.password": ENTITY,  # the whole string, trimmed, EntityPath included
        "socket.keepalive.enable": "true",
        "metadata.max.age.ms": "180000",
        "request.timeout.ms": "60000",
        "message.max.bytes": "1000000",
    }


def test_consumer_config_is_the_sasl_login_plus_microsofts_recommendations() -> None:
    assert eventhubs_config(NAMESPACE, role="consumer") == {
        "bootstrap.servers": "orders-ns.servicebus.windows.net:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "$ConnectionString",
        "sasl.password": NAMESPACE,
        "socket.keepalive.enable": "true",
        "metadata.max.age.ms": "180000",
        "session.timeout.ms": "30000",
        "heartbeat.interval.ms": "3000",
        "max.poll.interval.ms": "300000",
    }


def test_a_quoted_string_logs_in_without_its_quotes() -> None:
    assert eventhubs_config(f"'{NAMESPACE}'", role="consumer")["sasl.password"] == NAMESPACE


def test_a_shared_access_signature_is_refused_with_the_reason() -> None:
    text = f"Endpoint=sb://orders-ns.servicebus.windows.net/;SharedAccessSignature={SIGNATURE}"
    with pytest.raises(ConfigError) as caught:
        eventhubs_config(text, role="producer", source="KAF_PRODUCER_EVENTHUBS_CONNECTION_STRING")
    message = str(caught.value)
    assert message.startswith(
        "KAF_PRODUCER_EVENTHUBS_CONNECTION_STRING holds a SharedAccessSignature"
    )
    assert "does not accept" in message and "SharedAccessKey" in message
    assert "SIGs3cr3t" not in message


def test_role_must_be_consumer_or_producer() -> None:
    with pytest.raises(ValueError, match="role must be"):
        eventhubs_config(NAMESPACE, role="admin")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ("orders-ns.servicebus.windows.net:9093", True),
        ("ORDERS-NS.SERVICEBUS.WINDOWS.NET", True),
        ("localhost:9092, orders-ns.servicebus.windows.net:9093", True),
        ("orders-ns.servicebus.chinacloudapi.cn:9093", True),
        ("orders-ns.servicebus.usgovcloudapi.net:9093", True),
        ("localhost:9092", False),
        ("servicebus.windows.net.example.com:9093", False),
        ("", False),
    ],
)
def test_is_eventhubs_host(servers: str, expected: bool) -> None:
    assert is_eventhubs_host(servers) is expected

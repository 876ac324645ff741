"""Azure Event Hubs' Kafka endpoint: parse a connection string, build a librdkafka config.

    >>> config = eventhubs_config(os.environ["EH_CONNECTION_STRING"], role="producer")

gives ``bootstrap.servers=<namespace>.servicebus.windows.net:9093``, ``SASL_SSL`` / ``PLAIN``
with ``sasl.username=$ConnectionString`` and the string itself as ``sasl.password``, plus the
settings Microsoft recommends for librdkafka clients ("Apache Kafka client configurations for
Azure Event Hubs", https://learn.microsoft.com/azure/event-hubs/apache-kafka-configurations).
Settings of your own override the recommended ones: ``{**eventhubs_config(...), **mine}``.

No error message and no repr here ever contains the key or the signature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from kaf.errors import ConfigError

__all__ = [
    "COMPRESSION_CODECS",
    "MAX_MESSAGE_BYTES",
    "RECOMMENDED",
    "ConnectionString",
    "eventhubs_config",
    "is_eventhubs_host",
    "parse_connection_string",
]

#: The Kafka endpoint of every Event Hubs namespace listens on this port.
KAFKA_PORT = 9093

#: Host suffixes of Event Hubs namespaces: public Azure, Azure China, Azure US Government.
HOST_SUFFIXES = (
    ".servicebus.windows.net",
    ".servicebus.chinacloudapi.cn",
    ".servicebus.usgovcloudapi.net",
)

#: ``message.max.bytes`` for producers. The service closes the connection on a request over
#: 1,046,528 bytes. librdkafka refuses a single message over ``message.max.bytes`` in
#: ``produce()`` (MSG_SIZE_TOO_LARGE) but lets a ProduceRequest exceed it by the request's own
#: framing (measured: about 60 bytes plus the topic name), so the limit must stay below the
#: service's. 1,000,000 is Microsoft's recommended ``max.request.size`` (and librdkafka's default).
MAX_MESSAGE_BYTES = 1_000_000

#: The codecs the service accepts (``compression.codec`` / ``compression.type``).
COMPRESSION_CODECS = ("none", "gzip")

#: Microsoft's recommended librdkafka settings per role (librdkafka section of the page above).
RECOMMENDED: dict[str, dict[str, str]] = {
    "common": {
        "socket.keepalive.enable": "true",  # Azure closes idle TCP connections after 240 s
        "metadata.max.age.ms": "180000",  # must stay below 240000
    },
    "producer": {
        "request.timeout.ms": "60000",  # must be above 20000
        "message.max.bytes": str(MAX_MESSAGE_BYTES),
    },
    "consumer": {
        "session.timeout.ms": "30000",  # the service allows 6000-300000
        "heartbeat.interval.ms": "3000",
        "max.poll.interval.ms": "300000",  # must exceed session.timeout.ms
    },
}

_HELP = (
    "copy it from the Azure portal: Event Hubs namespace > Shared access policies > a policy > "
    "'Connection string-primary key'"
)
_NAME = re.compile(r"[A-Za-z]{1,40}")
_KNOWN = {
    "endpoint": "Endpoint",
    "sharedaccesskeyname": "SharedAccessKeyName",
    "sharedaccesskey": "SharedAccessKey",
    "sharedaccesssignature": "SharedAccessSignature",
    "entitypath": "EntityPath",
}


@dataclass(frozen=True)
class ConnectionString:
    """The parts of an Event Hubs connection string; the repr hides the key and the signature.

    ``entity_path`` is set for a connection string copied from one event hub (not from the
    namespace): it names that event hub, which is the Kafka topic the string grants access to.
    """

    host: str
    key_name: str | None = None
    key: str | None = field(default=None, repr=False)
    signature: str | None = field(default=None, repr=False)
    entity_path: str | None = None

    @property
    def namespace(self) -> str:
        """The namespace name: the first label of the host."""
        return self.host.split(".", 1)[0]

    @property
    def bootstrap_servers(self) -> str:
        """The namespace's Kafka endpoint, ``<host>:9093``."""
        return f"{self.host}:{KAFKA_PORT}"

    def __repr__(self) -> str:
        secret = "key='***'" if self.key is not None else "signature='***'"
        return (
            f"ConnectionString(host={self.host!r}, key_name={self.key_name!r}, {secret}, "
            f"entity_path={self.entity_path!r})"
        )


def _unquote(value: str) -> str:
    # docker --env-file and some CI secret stores keep the quotes of VAR="..." literally.
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].strip()
    return text


def is_eventhubs_host(bootstrap_servers: str) -> bool:
    """Return whether any host in a ``bootstrap.servers`` list is an Event Hubs namespace."""
    for server in str(bootstrap_servers).split(","):
        host = server.strip().rsplit(":", 1)[0]
        if host.lower().rstrip(".").endswith(HOST_SUFFIXES):
            return True
    return False


def parse_connection_string(value: str, *, source: str = "connection string") -> ConnectionString:
    """Parse ``Endpoint=sb://<host>/;SharedAccessKeyName=…;SharedAccessKey=…[;EntityPath=…]``.

    A string with ``SharedAccessSignature=…`` instead of the key name and key parses too (see
    ``eventhubs_config`` for why Kaf does not connect with one). Names are case-insensitive,
    surrounding whitespace and quotes are ignored, unknown parts are ignored.

    Raises ``ConfigError`` naming ``source`` (e.g. the environment variable) and the missing or
    malformed part, never any value of the string.
    """
    if not isinstance(value, str):
        raise ConfigError(f"{source} must be a string, not {type(value).__name__}")
    text = _unquote(value)

    def invalid(problem: str) -> ConfigError:
        return ConfigError(
            f"{source} is not a valid Event Hubs connection string: {problem}; {_HELP}"
        )

    if not text:
        raise invalid("it is empty")
    parts: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, item = part.partition("=")
        name = name.strip()
        if not sep or not _NAME.fullmatch(name):
            raise invalid("it has a part that is not Name=value (parts are separated by ';')")
        canonical = _KNOWN.get(name.lower())
        if canonical is None:
            continue
        if canonical in parts:
            raise invalid(f"{canonical} appears twice")
        if item.strip():
            parts[canonical] = item.strip()

    endpoint = parts.get("Endpoint")
    if endpoint is None:
        raise invalid("Endpoint=sb://<namespace>.servicebus.windows.net/ is missing")
    url = urlsplit(endpoint)
    if url.scheme.lower() != "sb" or not url.hostname:
        raise invalid("Endpoint must look like sb://<namespace>.servicebus.windows.net/")

    key_name = parts.get("SharedAccessKeyName")
    key = parts.get("SharedAccessKey")
    signature = parts.get("SharedAccessSignature")
    if signature is not None and (key is not None or key_name is not None):
        raise invalid("it has both SharedAccessSignature and SharedAccessKeyName/SharedAccessKey")
    if signature is None:
        if key_name is None and key is None:
            raise invalid("SharedAccessKeyName and SharedAccessKey are missing")
        if key_name is None:
            raise invalid("SharedAccessKeyName is missing")
        if key is None:
            raise invalid("SharedAccessKey is missing")
    return ConnectionString(
        host=url.hostname,
        key_name=key_name,
        key=key,
        signature=signature,
        entity_path=parts.get("EntityPath"),
    )


def eventhubs_config(
    connection_string: str,
    *,
    role: Literal["consumer", "producer"],
    source: str = "connection string",
) -> dict[str, Any]:
    """Return the librdkafka config that connects a ``role`` client to an Event Hubs namespace.

    The connection string is validated first (``parse_connection_string``). A string holding a
    generated ``SharedAccessSignature`` token is refused with a ``ConfigError``: Microsoft
    documents that such tokens are not supported on the Kafka endpoint, and the service would
    only reject the login, which librdkafka retries forever. ``EntityPath`` is not used: it
    names the topic, which your handlers choose.

    All values are strings, as they would be from the environment.
    """
    if role not in ("consumer", "producer"):
        raise ValueError(f"role must be 'consumer' or 'producer', not {role!r}")
    parsed = parse_connection_string(connection_string, source=source)
    if parsed.signature is not None:
        raise ConfigError(
            f"{source} holds a SharedAccessSignature token, which the Event Hubs Kafka endpoint "
            "does not accept; use a connection string with SharedAccessKeyName and "
            f"SharedAccessKey instead ({_HELP})"
        )
    return {
        "bootstrap.servers": parsed.bootstrap_servers,
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "$ConnectionString",
        "sasl.password": _unquote(connection_string),
        **RECOMMENDED["common"],
        **RECOMMENDED[role],
    }

"""librdkafka configuration from the environment, its checks, and secret redaction.

``KAF_CONSUMER_<KEY>`` and ``KAF_PRODUCER_<KEY>`` variables map to consumer and producer
properties: the key is lower-cased and ``_`` becomes ``.``, so ``KAF_CONSUMER_BOOTSTRAP_SERVERS``
is ``bootstrap.servers``. A double underscore stands for an underscore: the two string-valued
librdkafka properties with one in their name are ``log_level`` (``KAF_CONSUMER_LOG__LEVEL``) and
``enabled_events``. ``<prefix>EVENTHUBS_CONNECTION_STRING`` expands to a complete Azure Event
Hubs config (``kaf.eventhubs``); explicit variables override what it sets.

A ``.env`` file in the working directory is read too; real environment variables win over it,
and ``os.environ`` is never modified. An empty value counts as unset.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from dotenv import dotenv_values

from kaf.errors import ConfigError
from kaf.eventhubs import COMPRESSION_CODECS, MAX_MESSAGE_BYTES, eventhubs_config, is_eventhubs_host

__all__ = [
    "CONNECTION_STRING",
    "CONSUMER_PREFIX",
    "PRODUCER_PREFIX",
    "check_consumer",
    "check_producer",
    "config_from_env",
    "env_name",
    "is_secret",
    "redact",
    "scrub",
    "setting_name",
]

CONSUMER_PREFIX = "KAF_CONSUMER_"
PRODUCER_PREFIX = "KAF_PRODUCER_"
#: The variable (after the prefix) holding an Event Hubs connection string.
CONNECTION_STRING = "EVENTHUBS_CONNECTION_STRING"

REDACTED = "***"
#: A key naming any of these holds a secret (librdkafka's, and the usual Java/registry names).
_SECRET_WORDS = (
    "password",
    "passphrase",
    "secret",
    "connection.string",
    "connectionstring",
    "user.info",
    "jaas",
)
_SECRET_KEYS = frozenset(
    {
        "ssl.key.pem",
        "ssl_key",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.assertion.private.key.pem",
    }
)
#: A value carrying an Event Hubs key or signature is a secret whatever its key.
_SAS_IN_TEXT = re.compile(r"(SharedAccess(?:Key|Signature)\s*=\s*)[^;\s\"']+", re.IGNORECASE)
_GROUP_ID_MAX = 256  # Event Hubs' limit on consumer group names
_SESSION_TIMEOUT_RANGE = (6000, 300000)  # what Event Hubs accepts, in ms


# -- environment ------------------------------------------------------------------------------


def _property(name: str) -> str:
    """``SESSION_TIMEOUT_MS`` -> ``session.timeout.ms``; ``LOG__LEVEL`` -> ``log_level``."""
    return "_".join(part.replace("_", ".") for part in name.lower().split("__"))


def env_name(prefix: str, key: str) -> str:
    """Return the variable that sets ``key``: ``env_name('KAF_CONSUMER_', 'group.id')``."""
    return prefix + "__".join(part.replace(".", "_") for part in key.split("_")).upper()


def _role(prefix: str) -> Literal["consumer", "producer"] | None:
    name = prefix.upper().rstrip("_")
    if name.endswith("CONSUMER"):
        return "consumer"
    if name.endswith("PRODUCER"):
        return "producer"
    return None


def config_from_env(
    prefix: str,
    *,
    env: Mapping[str, str] | None = None,
    env_file: str | os.PathLike[str] | None = ".env",
    role: Literal["consumer", "producer"] | None = None,
) -> dict[str, Any]:
    """Return the librdkafka config set by the variables that start with ``prefix``.

    ``env`` replaces the process environment and the ``.env`` file (for tests and for callers
    that read variables elsewhere). Otherwise ``os.environ`` is merged over the variables of
    ``env_file`` (``None``: no file; a missing file is fine). ``role`` selects the Event Hubs
    settings and is taken from a prefix ending in ``CONSUMER_`` or ``PRODUCER_``.

    Precedence, highest first: an explicit variable, then what
    ``<prefix>EVENTHUBS_CONNECTION_STRING`` expands to, then librdkafka's defaults. Values stay
    strings.

        >>> config_from_env("KAF_CONSUMER_", env={"KAF_CONSUMER_GROUP_ID": "orders"})
        {'group.id': 'orders'}

    Raises ``ConfigError`` for a malformed connection string, naming the variable.
    """
    if not prefix:
        raise ValueError("prefix must not be empty, e.g. 'KAF_CONSUMER_'")
    if env is None:
        from_file = dotenv_values(env_file) if env_file is not None else {}
        variables: dict[str, str | None] = {**from_file, **os.environ}
    else:
        variables = dict(env)
    config: dict[str, Any] = {}
    for name, value in variables.items():
        if name.startswith(prefix) and len(name) > len(prefix) and value:
            config[_property(name[len(prefix) :])] = value
    connection_string = config.pop(_property(CONNECTION_STRING), None)
    if connection_string is None:
        return config
    role = role or _role(prefix)
    source = prefix + CONNECTION_STRING
    if role is None:
        raise ConfigError(f"{source}: pass role='consumer' or role='producer' to config_from_env")
    return {**eventhubs_config(connection_string, role=role, source=source), **config}


# -- checks -----------------------------------------------------------------------------------


def setting_name(key: str, source: str) -> str:
    """Name a setting for an error message, as the user wrote it.

    ``source`` is the environment prefix the config came from (ends with ``_``), giving the
    variable (``KAF_CONSUMER_GROUP_ID``), or the name of the argument that held the dict
    (``consumer_config``), giving ``consumer_config['group.id']``.
    """
    if source.endswith("_"):
        return env_name(source, key)
    return f"{source}[{key!r}]"


def _first(config: Mapping[str, Any], *keys: str) -> tuple[str, Any]:
    """The first of ``keys`` (aliases) that is set, and its value; else (``keys[0]``, None)."""
    for key in keys:
        value = config.get(key)
        if value is not None and str(value).strip():
            return key, value
    return keys[0], None


def _int(config: Mapping[str, Any], key: str, source: str) -> int | None:
    value = config.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{setting_name(key, source)} must be a whole number") from None


def _check_common(config: Mapping[str, Any], source: str, role: str) -> bool:
    """Check what both clients need; return whether the config points at Event Hubs."""
    key, servers = _first(config, "bootstrap.servers", "metadata.broker.list")
    if servers is None:
        raise ConfigError(
            f"the {role} configuration has no bootstrap.servers: set "
            f"{setting_name('bootstrap.servers', source)}, e.g. 'localhost:9092'"
            + (
                f", or {source}{CONNECTION_STRING} for Azure Event Hubs"
                if source.endswith("_")
                else ""
            )
        )
    if not is_eventhubs_host(str(servers)):
        return False
    protocol_key, protocol = _first(config, "security.protocol")
    if str(protocol).upper() != "SASL_SSL":
        raise ConfigError(
            f"{setting_name(protocol_key, source)} must be SASL_SSL for Azure Event Hubs "
            f"({setting_name(key, source)} is an Event Hubs namespace)"
        )
    return True


def check_consumer(config: Mapping[str, Any], *, source: str) -> None:
    """Raise ``ConfigError`` if a consumer config cannot work; call before connecting.

    Checks: ``bootstrap.servers`` and ``group.id`` are set; for an Event Hubs namespace also
    ``security.protocol=SASL_SSL``, a ``group.id`` of at most 256 characters and a
    ``session.timeout.ms`` between 6000 and 300000. ``source`` is explained in
    ``setting_name``. Messages name the setting and never its value.
    """
    eventhubs = _check_common(config, source, "consumer")
    _, group = _first(config, "group.id")
    if group is None:
        raise ConfigError(
            f"the consumer configuration has no group.id: set {setting_name('group.id', source)}, "
            "e.g. 'my-service' (consumers with the same group.id share the partitions)"
        )
    if not eventhubs:
        return
    if len(str(group)) > _GROUP_ID_MAX:
        raise ConfigError(
            f"{setting_name('group.id', source)} is {len(str(group))} characters long; "
            f"Azure Event Hubs allows at most {_GROUP_ID_MAX}"
        )
    timeout = _int(config, "session.timeout.ms", source)
    low, high = _SESSION_TIMEOUT_RANGE
    if timeout is not None and not low <= timeout <= high:
        raise ConfigError(
            f"{setting_name('session.timeout.ms', source)} is {timeout}; Azure Event Hubs "
            f"accepts {low} to {high} (Microsoft recommends 30000)"
        )


def check_producer(config: Mapping[str, Any], *, source: str) -> None:
    """Raise ``ConfigError`` if a producer config cannot work; call before connecting.

    Checks: ``bootstrap.servers`` is set; for an Event Hubs namespace also
    ``security.protocol=SASL_SSL``, a compression codec of ``none`` or ``gzip`` (the only ones
    the service accepts), and ``message.max.bytes`` of at most 1,000,000 so that librdkafka
    refuses an oversize output in ``produce()`` instead of the service closing the connection.
    """
    if not _check_common(config, source, "producer"):
        return
    key, codec = _first(config, "compression.codec", "compression.type")
    if codec is not None and str(codec).strip().lower() not in COMPRESSION_CODECS:
        raise ConfigError(
            f"{setting_name(key, source)} is {str(codec).strip()!r}; Azure Event Hubs accepts "
            "only 'none' or 'gzip'"
        )
    size = _int(config, "message.max.bytes", source)
    if size is not None and size > MAX_MESSAGE_BYTES:
        raise ConfigError(
            f"{setting_name('message.max.bytes', source)} is {size}; Azure Event Hubs closes the "
            f"connection on requests over 1046528 bytes, so it must be at most {MAX_MESSAGE_BYTES}"
        )


# -- secrets ----------------------------------------------------------------------------------


def is_secret(key: str, value: Any = None) -> bool:
    """Return whether ``key`` (or a string ``value`` holding an Event Hubs key) is secret."""
    name = key.lower()
    if name in _SECRET_KEYS or any(word in name for word in _SECRET_WORDS):
        return True
    if "token" in name and not name.endswith(".url"):
        return True
    return isinstance(value, str) and _SAS_IN_TEXT.search(value) is not None


def redact(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``config`` with every secret value replaced by ``'***'``.

    Secret: passwords and passphrases (``sasl.password``, ``ssl.key.password``,
    ``ssl.keystore.password``), client secrets, ``ssl.key.pem``, ``sasl.oauthbearer.config``,
    tokens, connection strings, and any value that carries a ``SharedAccessKey=`` or
    ``SharedAccessSignature=``. Empty values stay as they are.
    """
    return {
        key: REDACTED if value not in (None, "") and is_secret(str(key), value) else value
        for key, value in config.items()
    }


def _secret_values(configs: Iterable[Mapping[str, Any]]) -> list[str]:
    values = {
        str(value)
        for config in configs
        for key, value in config.items()
        if isinstance(value, str) and value and is_secret(str(key), value)
    }
    return sorted(values, key=len, reverse=True)


def scrub(text: str, *configs: Mapping[str, Any]) -> str:
    """Return ``text`` without the secret values of ``configs`` and without Event Hubs keys.

    For messages that may quote a config, e.g. an exception text before it is logged.
    """
    for value in _secret_values(configs):
        text = text.replace(value, REDACTED)
    return _SAS_IN_TEXT.sub(lambda m: m.group(1) + REDACTED, text)

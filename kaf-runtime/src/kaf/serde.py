"""The ``accepts`` and ``returns`` formats: bytes on the wire <-> what a handler sees and yields.

accepts: ``'json'`` parsed JSON, ``'str'`` UTF-8 text, ``'bytes'`` the raw value (None for a
tombstone), ``None`` the confluent_kafka.Message itself.
returns: ``'json'`` any JSON-serialisable value, ``'str'`` text, ``'bytes'`` bytes (None for a
tombstone).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kaf.errors import DecodeError, SetupError

Decoder = Callable[[Any], Any]
Encoder = Callable[[Any], "bytes | None"]


_json_decode = json.JSONDecoder().decode  # what json.loads calls, minus its argument checks


def _decode_json(msg: Any) -> Any:
    raw = msg.value()
    if raw is None:
        raise DecodeError("null value (tombstone) cannot be decoded as json")
    try:
        return _json_decode(raw.decode())
    except UnicodeDecodeError as exc:
        raise DecodeError(f"value is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise DecodeError(f"value is not valid JSON: {exc.msg} at char {exc.pos}") from None


def _decode_str(msg: Any) -> str:
    raw = msg.value()
    if raw is None:
        raise DecodeError("null value (tombstone) cannot be decoded as str")
    try:
        text: str = raw.decode()
    except UnicodeDecodeError as exc:
        raise DecodeError(f"value is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    return text


# One encoder for every output: json.dumps with options builds a new JSONEncoder per call, which
# cost more than the encoding itself (measured in bench/). A cycle still raises (RecursionError).
_json_encode = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, check_circular=False
).encode


def _encode_json(value: Any) -> bytes:
    return _json_encode(value).encode()


def _encode_str(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"returns='str' needs a str value, got {type(value).__name__}")
    return value.encode()


def _encode_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"returns='bytes' needs a bytes value, got {type(value).__name__}")


DECODERS: dict[str | None, Decoder] = {
    "json": _decode_json,
    "str": _decode_str,
    "bytes": lambda msg: msg.value(),
    None: lambda msg: msg,
}
ENCODERS: dict[str, Encoder] = {"json": _encode_json, "str": _encode_str, "bytes": _encode_bytes}


def decoder(accepts: str | None) -> Decoder:
    """Return the function that turns a message into what the handler accepts."""
    try:
        return DECODERS[accepts]
    except (KeyError, TypeError):
        raise SetupError(
            f"unknown accepts={accepts!r}; use one of 'json', 'str', 'bytes' or None"
        ) from None


def encoder(returns: str) -> Encoder:
    """Return the function that turns a yielded value into the bytes to publish."""
    try:
        return ENCODERS[returns]
    except (KeyError, TypeError):
        raise SetupError(
            f"unknown returns={returns!r}; use one of 'json', 'str' or 'bytes'"
        ) from None


def encode_key(key: Any) -> bytes | None:
    """Keys may be bytes, str or None."""
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    raise TypeError(f"a key must be bytes, str or None, got {type(key).__name__}")

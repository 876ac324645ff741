"""One registered handler: decode an input, call the handler, encode what it yields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import GeneratorType
from typing import Any

from kaf.message import Result
from kaf.serde import Decoder, Encoder, encode_key

# One output, as confluent-kafka's produce_batch takes it: {"value": ..., "key": ...}, and
# "headers" when set (which produce_batch would drop: those go through produce()).
Output = dict[str, Any]


@dataclass(frozen=True)
class Processor:
    """A handler with its topics and formats, as registered by ``app.process``."""

    handler: Callable[..., Any]
    topic: str
    publish_to: str | None
    accepts: str | None
    returns: str
    decode: Decoder
    encode: Encoder

    @property
    def name(self) -> str:
        return getattr(self.handler, "__qualname__", repr(self.handler))

    def outputs(self, msg: Any) -> tuple[list[Output], bool]:
        """Return the encoded outputs for one input message, and whether any has headers.

        All of them or none: anything raised while decoding, running the handler or encoding
        any output propagates, and the outputs yielded before it are dropped.
        """
        produced = self.handler(self.decode(msg))
        if produced is None:
            return [], False
        if type(produced) is not GeneratorType and isinstance(produced, (dict, str, bytes)):
            raise TypeError(
                f"handler {self.name} returned a {type(produced).__name__}; "
                "yield (value, key) pairs, or return a list of them"
            )
        encode = self.encode
        outputs: list[Output] = []
        headed = False
        for item in produced:
            # The common case first, with exact type checks: this runs once per output.
            if type(item) is tuple and len(item) == 2:
                value, key = item
                headers = None
            elif isinstance(item, Result):
                value, key, headers = item
            else:
                value, key, headers = item, None, None
            if type(key) is str:
                key = key.encode()
            elif key is not None and type(key) is not bytes:
                key = encode_key(key)
            if headers is None:
                outputs.append({"value": encode(value), "key": key})
            else:
                outputs.append({"value": encode(value), "key": key, "headers": headers})
                headed = True
        if outputs and self.publish_to is None:
            raise TypeError(f"handler {self.name} yielded outputs but has no publish_to topic")
        return outputs, headed

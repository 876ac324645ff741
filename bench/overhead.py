"""Where the time goes: the per-message Python cost of Kaf's loop against a hand-written one.

    .venv/bin/python bench/overhead.py

No broker: both run the benchmark's job over the same in-memory messages, producing to a stub
that only collects the delivery callbacks and calls them back, as librdkafka would. So the
numbers are the Python work per message, without librdkafka's share (consume, produce, delivery
reports) or the broker's. Each figure is the best of several runs, in µs per message.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message

from kaf import KafkaApp
from kaf._loop import Loop

BATCH = 500


class StubProducer:
    """Takes outputs like confluent_kafka.Producer and acknowledges them all on poll()."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def produce(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> None:
        self.callbacks.append(kwargs.get("on_delivery"))

    def poll(self, timeout: float = 0) -> int:
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback(None, None)
        return len(callbacks)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0


def messages(n: int) -> list[Any]:
    text = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " * 2)[
        :95
    ]
    result = []
    for i in range(n):
        key = f"key-{i:08d}"
        value = json.dumps({"id": key, "number": i, "text": text}).encode()
        msg = Message(topic="in", partition=i % 4, offset=i // 4, key=key.encode(), value=value)
        result.append(msg)
    return result


def hand_written(msgs: list[Any]) -> float:
    """The loop body of bench/variants.py's confluent(), with the same JSON functions as Kaf."""
    producer = StubProducer()
    loads = json.JSONDecoder().decode
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)
    dumps = encoder.encode
    produce = producer.produce

    class Batch:
        __slots__ = ("remaining",)

        def __init__(self) -> None:
            self.remaining = 0

        def delivered(self, err: Any, msg: Any) -> None:
            if err is not None:
                raise RuntimeError(err)
            self.remaining -= 1

    started = time.perf_counter()
    for i in range(0, len(msgs), BATCH):
        batch = Batch()
        delivered, offsets = batch.delivered, {}
        for msg in msgs[i : i + BATCH]:
            if msg.error() is not None:
                continue
            value = loads(msg.value().decode())
            value["number"] += 1
            produce("out", dumps(value).encode(), msg.key(), on_delivery=delivered)
            batch.remaining += 1
            offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
        producer.poll(0)
    return time.perf_counter() - started


def kaf(msgs: list[Any]) -> float:
    """Kaf's Loop.handle_batch with the README-style handler of bench/variants.py."""
    app = KafkaApp(
        "overhead",
        consumer_config={"bootstrap.servers": "unused:9092", "group.id": "unused"},
        producer_config={"bootstrap.servers": "unused:9092"},
    )

    @app.process(topic="in", publish_to="out", accepts="json", returns="json")
    def add_one(value: dict[str, Any]) -> Any:
        value["number"] += 1
        yield value, value["id"]

    producer = StubProducer()
    loop = Loop(app, consumer=object(), producer=producer)
    started = time.perf_counter()
    for i in range(0, len(msgs), BATCH):
        loop.handle_batch(msgs[i : i + BATCH])
        producer.poll(0)
        loop.checkpoint.seal()  # as the run loop does after serving delivery reports
    return time.perf_counter() - started


def part(msgs: list[Any], what: str) -> float:
    """One ingredient alone, over the same messages."""
    from kaf.serde import decoder, encoder

    decode, encode = decoder("json"), encoder("json")
    values = [decode(m) for m in msgs]

    def handler(value: dict[str, Any]) -> Any:
        value["number"] += 1
        yield value, value["id"]

    started = time.perf_counter()
    if what == "decode":
        for msg in msgs:
            decode(msg)
    elif what == "encode":
        for value in values:
            encode(value)
    else:  # the handler: a generator created and drained per message
        for value in values:
            for _ in handler(value):
                pass
    return time.perf_counter() - started


def best(run: Callable[[], float], n: int, repeat: int) -> float:
    return min(run() for _ in range(repeat)) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    msgs, n, repeat = messages(args.messages), args.messages, args.repeat
    hand = best(lambda: hand_written(msgs), n, repeat)
    total = best(lambda: kaf(msgs), n, repeat)
    decode = best(lambda: part(msgs, "decode"), n, repeat)
    encode = best(lambda: part(msgs, "encode"), n, repeat)
    handler = best(lambda: part(msgs, "handler"), n, repeat)
    rows = [
        ("hand-written loop body (JSON, produce call, delivery callback)", hand),
        ("Kaf, per message in all", total),
        ("  of which decoding JSON (accepts='json')", decode),
        ("  of which encoding JSON (returns='json')", encode),
        ("  of which the README-style generator handler", handler),
        ("  the rest: loop, produce call, delivery tracking", total - decode - encode - handler),
        ("Kaf minus hand-written", total - hand),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"{'µs per message, best of ' + str(repeat):<{width}}  (N={n:,})")
    for label, value in rows:
        print(f"{label:<{width}}  {value:5.2f}")


if __name__ == "__main__":
    main()

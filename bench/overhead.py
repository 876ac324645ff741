"""Where the time goes: the per-message Python cost of Kaf's loop against a hand-written one.

    .venv/bin/python bench/overhead.py

No broker: both run the benchmark's job over the same in-memory messages, producing to a real
confluent-kafka Producer that has no broker, so producing costs what it costs in librdkafka but
nothing is sent. So the numbers are the work per message in the loop's thread, without consuming,
without delivery reports (one callback per output in both loops) and without the broker. Each
figure is the best of several runs, in µs per message.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import variants  # bench/variants.py: this script's directory is on sys.path
from confluent_kafka import Message, Producer

from kaf import KafkaApp
from kaf._loop import Loop

BATCH = variants.BATCH


# A producer with no broker: produce() and produce_batch() do their real work in librdkafka
# (copy, partition, enqueue), nothing is ever sent, and no delivery callback ever runs.
NOWHERE = {
    "bootstrap.servers": "127.0.0.1:1",
    "queue.buffering.max.messages": 10_000_000,
    "queue.buffering.max.kbytes": 4_000_000,
    "log_level": 0,
}


@contextmanager
def unconnected_producer() -> Iterator[Any]:
    producer = Producer(NOWHERE)
    try:
        yield producer
    finally:
        producer.purge()
        # Serve the purge reports: until then librdkafka holds each output's callback, and
        # Kaf's callback leads back to the producer: a cycle the garbage collector cannot see.
        with contextlib.suppress(RuntimeError):  # the hand-written loop raises on a failure
            producer.poll(0)


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


def hand_written(msgs: list[Any], *, batch_produce: bool = False) -> float:
    """bench/variants.py's own loop body for (a), or for (a'') with ``batch_produce``."""
    handle = variants.produce_as_one if batch_produce else variants.produce_each
    loads, dumps = variants.json_functions(plain=False)
    with unconnected_producer() as producer:
        started = time.thread_time()
        for i in range(0, len(msgs), BATCH):
            handle(msgs[i : i + BATCH], producer, "out", loads, dumps)
            producer.poll(0)
        return time.thread_time() - started


def kaf(msgs: list[Any]) -> float:
    """Kaf's Loop.handle_batch with the README-style handler of bench/variants.py."""
    app = KafkaApp(
        "overhead",
        consumer_config={"bootstrap.servers": "unused:9092", "group.id": "unused"},
        producer_config=NOWHERE,
    )

    @app.process(topic="in", publish_to="out", accepts="json", returns="json")
    def add_one(value: dict[str, Any]) -> Any:
        value["number"] += 1
        yield value, value["id"]

    with unconnected_producer() as producer:
        loop = Loop(app, consumer=object(), producer=producer)
        loop.queue_limit = NOWHERE["queue.buffering.max.messages"]  # set from the config it made
        started = time.thread_time()
        for i in range(0, len(msgs), BATCH):
            loop.handle_batch(msgs[i : i + BATCH])
            producer.poll(0)
            loop.checkpoint.seal()  # as the run loop does after serving delivery reports
        return time.thread_time() - started


def part(msgs: list[Any], what: str) -> float:
    """One ingredient alone, over the same messages."""
    from kaf.serde import decoder, encoder

    decode, encode = decoder("json"), encoder("json")
    values = [decode(m) for m in msgs]

    def handler(value: dict[str, Any]) -> Any:
        value["number"] += 1
        yield value, value["id"]

    started = time.thread_time()
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
    return time.thread_time() - started


def best(run: Callable[[], float], n: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()  # a Loop is a reference cycle: free the last run's producer and its threads
        times.append(run())
    return min(times) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("kaf").setLevel(logging.ERROR)  # the purged outputs' retries
    msgs, n, repeat = messages(args.messages), args.messages, args.repeat
    hand = best(lambda: hand_written(msgs), n, repeat)
    hand_batch = best(lambda: hand_written(msgs, batch_produce=True), n, repeat)
    total = best(lambda: kaf(msgs), n, repeat)
    decode = best(lambda: part(msgs, "decode"), n, repeat)
    encode = best(lambda: part(msgs, "encode"), n, repeat)
    handler = best(lambda: part(msgs, "handler"), n, repeat)
    rows = [
        ("hand-written loop body (JSON, produce() per output)", hand),
        ("the same with produce_batch() per batch, as (a'')", hand_batch),
        ("Kaf, per message in all", total),
        ("  of which decoding JSON (accepts='json')", decode),
        ("  of which encoding JSON (returns='json')", encode),
        ("  of which the README-style generator handler", handler),
        ("  the rest: loop, producing, delivery tracking", total - decode - encode - handler),
        ("Kaf minus hand-written", total - hand),
        ("Kaf minus hand-written with produce_batch(): Kaf's own work", total - hand_batch),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"{'µs per message, best of ' + str(repeat):<{width}}  (N={n:,})")
    for label, value in rows:
        print(f"{label:<{width}}  {value:5.2f}")


if __name__ == "__main__":
    main()

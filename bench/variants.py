"""The benchmark's job, written once per framework: parse JSON, add one, emit JSON, same key.

Run by ``bench/run.py``, one process per run:

    python bench/variants.py VARIANT IN_SERVERS OUT_SERVERS IN_TOPIC OUT_TOPIC GROUP

Each variant consumes IN_TOPIC from the beginning with a fresh consumer group, writes every
output to OUT_TOPIC, commits input offsets only after the outputs are acknowledged
(at-least-once), and on SIGTERM finishes, commits and exits 0. Every input value is
``{"id": KEY, "number": N, "text": ...}`` with KEY equal to the message key, so handlers that
see only the decoded value (Kaf's ``accepts='json'``) can emit the same key.
"""

from __future__ import annotations

import json
import signal
import sys
from collections import deque
from typing import Any

# The same client settings for every variant, so only the code around the clients differs.
# Tansu's JoinGroup waits about session.timeout.ms / 2: keep it at the allowed minimum.
CONSUMER = {
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
}
PRODUCER = {"acks": "all", "linger.ms": 5}
BATCH = 500  # messages per consume() call where the variant takes a batch size
COMMIT_INTERVAL = 5.0  # seconds, Kaf's default; the other variants use the same


class Stop:
    """SIGTERM/SIGINT set a flag that the loop checks between batches."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self.set)
        signal.signal(signal.SIGINT, self.set)

    def set(self, *_: Any) -> None:
        self.requested = True


# -- (a) a hand-written confluent-kafka loop: the ceiling -------------------------------------


class _Batch:
    """The outputs of one consumed batch still in flight, and the offsets it lets us commit."""

    __slots__ = ("offsets", "remaining")

    def __init__(self, offsets: dict[tuple[str, int], int], remaining: int) -> None:
        self.offsets = offsets
        self.remaining = remaining

    def delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            # Never commit past an output that was not delivered: crash, restart, reprocess.
            raise RuntimeError(f"delivery to {msg.topic()} failed: {err}")
        self.remaining -= 1


def json_functions(*, plain: bool) -> tuple[Any, Any]:
    """(loads, dumps): plain json.loads / json.dumps, or one reused decoder and encoder."""
    if plain:  # what most hand-written loops do
        return json.loads, json.dumps
    # Reuse one decoder and one encoder, as Kaf does: a JSON call costs half as much.
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)
    return json.JSONDecoder().decode, encoder.encode


def produce_each(msgs: list[Any], producer: Any, sink: str, loads: Any, dumps: Any) -> _Batch:
    """(a)'s loop body for one consumed batch: one produce() per output."""
    offsets: dict[tuple[str, int], int] = {}
    batch = _Batch(offsets, 0)
    delivered, produce = batch.delivered, producer.produce
    for msg in msgs:
        if msg.error() is not None:
            continue
        value = loads(msg.value().decode())
        value["number"] += 1
        produce(sink, dumps(value).encode(), msg.key(), on_delivery=delivered)
        batch.remaining += 1
        offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
    return batch


def produce_as_one(msgs: list[Any], producer: Any, sink: str, loads: Any, dumps: Any) -> _Batch:
    """(a'')'s loop body for one consumed batch: its outputs in one produce_batch() call."""
    offsets: dict[tuple[str, int], int] = {}
    batch = _Batch(offsets, 0)
    delivered = batch.delivered
    outputs: list[dict[str, Any]] = []
    for msg in msgs:
        if msg.error() is not None:
            continue
        value = loads(msg.value().decode())
        value["number"] += 1
        outputs.append({"value": dumps(value).encode(), "key": msg.key()})
        batch.remaining += 1
        offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
    if producer.produce_batch(sink, outputs, on_delivery=delivered) < len(outputs):
        for output in outputs:  # what did not fit in the queue, one by one
            while "_error" in output:
                try:
                    producer.produce(sink, output["value"], output["key"], on_delivery=delivered)
                    del output["_error"]
                except BufferError:
                    producer.poll(0.1)
    return batch


def confluent(
    in_servers: str,
    out_servers: str,
    source: str,
    sink: str,
    group: str,
    *,
    plain_json: bool = False,
    batch_produce: bool = False,
) -> None:
    import time

    from confluent_kafka import Consumer, Producer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": in_servers, "group.id": group, "enable.auto.commit": False} | CONSUMER
    )
    producer = Producer({"bootstrap.servers": out_servers} | PRODUCER)
    in_flight: deque[_Batch] = deque()

    def commit() -> None:
        offsets: dict[tuple[str, int], int] = {}
        while in_flight and in_flight[0].remaining == 0:
            offsets.update(in_flight.popleft().offsets)
        if offsets:
            tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            consumer.commit(offsets=tps, asynchronous=False)

    def revoked(_consumer: Any, _partitions: Any) -> None:
        producer.flush()
        commit()
        in_flight.clear()

    consumer.subscribe([source], on_revoke=revoked)
    stop = Stop()
    loads, dumps = json_functions(plain=plain_json)
    handle = produce_as_one if batch_produce else produce_each
    next_commit = time.monotonic() + COMMIT_INTERVAL
    while not stop.requested:
        msgs = consumer.consume(BATCH, 1.0)
        if msgs:
            in_flight.append(handle(msgs, producer, sink, loads, dumps))
        producer.poll(0)
        if time.monotonic() >= next_commit:
            commit()
            next_commit = time.monotonic() + COMMIT_INTERVAL
    producer.flush()
    commit()
    consumer.close()


def confluent_plain_json(*args: str) -> None:
    confluent(*args, plain_json=True)


def confluent_produce_batch(*args: str) -> None:
    confluent(*args, batch_produce=True)


# -- (b), (b'), (c) Kaf, the original README's handler style -----------------------------------


def kaf(
    in_servers: str, out_servers: str, source: str, sink: str, group: str, **options: Any
) -> None:
    from kaf import KafkaApp

    app = KafkaApp(
        "bench",
        consumer_config={"bootstrap.servers": in_servers, "group.id": group} | CONSUMER,
        producer_config={"bootstrap.servers": out_servers} | PRODUCER,
        commit_interval=COMMIT_INTERVAL,
        **options,
    )

    @app.process(topic=source, publish_to=sink, accepts="json", returns="json")
    def add_one(value: dict[str, Any]) -> Any:
        value["number"] += 1
        yield value, value["id"]

    app.run()


def kaf_batch1(*args: str) -> None:
    kaf(*args, consumer_batch_size=1)


# -- peers, when installed -------------------------------------------------------------------


def quixstreams(in_servers: str, out_servers: str, source: str, sink: str, group: str) -> None:
    from quixstreams import Application

    if in_servers != out_servers:
        raise SystemExit("Quix Streams uses one broker for both sides")
    app = Application(
        broker_address=in_servers,
        consumer_group=group,
        auto_offset_reset="earliest",
        commit_interval=COMMIT_INTERVAL,
        consumer_extra_config={k: v for k, v in CONSUMER.items() if k != "auto.offset.reset"},
        producer_extra_config=PRODUCER,
        processing_guarantee="at-least-once",
        use_changelog_topics=False,
        loglevel="WARNING",
    )
    inputs = app.topic(source, value_deserializer="json", key_deserializer="bytes")
    outputs = app.topic(sink, value_serializer="json", key_serializer="bytes")

    def add_one(value: dict[str, Any]) -> dict[str, Any]:
        value["number"] += 1
        return value

    app.dataframe(inputs).apply(add_one).to_topic(outputs)
    app.run()


def faststream(in_servers: str, out_servers: str, source: str, sink: str, group: str) -> None:
    import asyncio

    from faststream import AckPolicy, FastStream
    from faststream.confluent import KafkaBroker, KafkaMessage

    consumer_side = KafkaBroker(in_servers, config=CONSUMER | {"auto.offset.reset": "earliest"})
    producer_side = KafkaBroker(out_servers, config=PRODUCER)

    # A batch subscriber that commits (acks) a batch once all its outputs are confirmed: the
    # fastest at-least-once shape FastStream offers. One-message-at-a-time with a confirmed
    # publish would wait for a broker round trip per message.
    @consumer_side.subscriber(
        source,
        group_id=group,
        batch=True,
        max_records=BATCH,
        ack_policy=AckPolicy.ACK,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    async def add_one(values: list[dict[str, Any]], msg: KafkaMessage) -> None:
        futures = []
        for value, raw in zip(values, msg.raw_message, strict=True):
            value["number"] += 1
            futures.append(await producer_side.publish(value, sink, key=raw.key(), no_confirm=True))
        await asyncio.gather(*futures)

    app = FastStream(consumer_side)

    @app.on_startup
    async def connect() -> None:
        await producer_side.connect()

    @app.after_shutdown
    async def close() -> None:
        await producer_side.stop()

    asyncio.run(app.run())


VARIANTS = {
    "confluent": confluent,
    "confluent-json": confluent_plain_json,
    "confluent-batch": confluent_produce_batch,
    "kaf": kaf,
    "kaf-batch1": kaf_batch1,
    "kaf-2brokers": kaf,
    "quixstreams": quixstreams,
    "faststream": faststream,
}

if __name__ == "__main__":
    name, *arguments = sys.argv[1:]
    VARIANTS[name](*arguments)

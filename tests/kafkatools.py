"""Helpers to read and write topics on real brokers, and to run an app in a thread."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kaf import KafkaApp

# Tansu's JoinGroup waits about session.timeout.ms / 2: keep it at the allowed minimum.
FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topics(servers: str, *topics: str, partitions: int = 2) -> None:
    admin = AdminClient({"bootstrap.servers": servers})
    for future in admin.create_topics([NewTopic(t, partitions, 1) for t in topics]).values():
        future.result(10)


def produce(servers: str, topic: str, values: list[Any], *, keys: list[Any] | None = None, raw: bool = False) -> None:  # fmt: skip
    producer = Producer({"bootstrap.servers": servers})
    for i, value in enumerate(values):
        data = value if raw else json.dumps(value).encode()
        producer.produce(topic, data, keys[i] if keys else None)
    assert producer.flush(10) == 0


def read_all(servers: str, topic: str, *, expect: int = 0, timeout: float = 20.0, idle: float = 1.0) -> list[Any]:  # fmt: skip
    """Read every record of ``topic`` from the beginning (by reading, never by watermarks).

    Create the topic before anything writes to it: a reader assigned to a topic that Tansu
    auto-created while a producer was writing to it may never see the records.

    Waits until at least ``expect`` records arrived, then until nothing new came for ``idle`` s.
    """
    consumer = Consumer(
        {"bootstrap.servers": servers, "group.id": unique("reader"), "enable.auto.commit": False}
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign(
            [TopicPartition(topic, p, -2) for p in metadata.partitions]
        )  # -2: beginning
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(500, 0.2) if m.error() is None]
            records.extend(batch)
            now = time.monotonic()
            if batch:
                last_new = now
            elif len(records) >= expect and now - last_new >= idle:
                break
        return records
    finally:
        consumer.close()


def _partitions(client: Any, topic: str, deadline: float) -> list[int]:
    """The topic's partitions, waiting for it to exist."""
    while True:
        metadata = client.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is None and metadata.partitions:
            return list(metadata.partitions)
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {topic} does not exist: {metadata.error}")
        time.sleep(0.2)


def topic_names(servers: str) -> set[str]:
    admin = AdminClient({"bootstrap.servers": servers})
    return set(admin.list_topics(timeout=10).topics)


def committed(servers: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": servers, "group.id": group})
    try:
        partitions = _partitions(
            AdminClient({"bootstrap.servers": servers}), topic, time.monotonic() + 10
        )
        offsets = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in offsets if tp.offset >= 0}  # -1001: none yet
    finally:
        consumer.close()


def end_offsets(records: list[Any]) -> dict[int, int]:
    """Last offset + 1 per partition, from records actually read."""
    ends: dict[int, int] = {}
    for m in records:
        ends[m.partition()] = max(ends.get(m.partition(), 0), m.offset() + 1)
    return ends


@contextmanager
def running(app: KafkaApp) -> Iterator[list[BaseException]]:
    """Run ``app`` in a thread; stop it and wait for a clean shutdown on exit."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            app.run()
        except BaseException as exc:  # pragma: no cover - surfaced by the assert below
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"kaf-{app.name}")
    thread.start()
    try:
        yield errors
    finally:
        app.stop()
        thread.join(30)
        assert not thread.is_alive(), "the app did not stop within 30 s"
    assert not errors, errors


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)

"""Fault injection on real brokers and real processes: kills, outages, rebalances, poison.

The service under test is ``tests.apps.numbers`` ({"n": n} -> {"n": n, "result": n + 1}, keyed
str(n)) in its own process, so it can be SIGKILLed and restarted; the poison test runs an app in
a thread. Outages cut a ``tansu proxy`` between the app and a broker, so the broker keeps its data.
SIGTERM mid-stream (nothing lost, no duplicates) is tests/test_run.py's
test_sigterm_stops_cleanly_and_a_restart_resumes.

Random moments come from a seeded generator; a failure message shows the seed, and
KAF_FAULT_SEED=<seed> replays it.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from kaf import KafkaApp
from kaf.testing import EmbeddedBroker
from tests.kafkatools import (
    FAST_GROUP,
    committed,
    create_topics,
    end_offsets,
    produce,
    read_all,
    running,
    unique,
    wait_for,
)
from tests.test_run import run_numbers

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("KAF_FAULT_SEED", random.randrange(2**32)))


class Service:
    """One ``tests.apps.numbers`` process; a thread collects its log lines."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = run_numbers(env)
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def assigned(self) -> set[int]:
        """Partitions of the latest 'assigned' log line (the group rebalances eagerly)."""
        latest = [line for line in self.lines if " assigned " in line]
        return {int(p) for p in re.findall(r"\[(\d+)\]", latest[-1])} if latest else set()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self._wait(10)

    def stop(self) -> int:
        """SIGTERM, then wait for a clean exit; return the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self._wait(30)

    def _wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.reader.join(5)
            self.stdout.close()
        return code


@pytest.fixture
def services() -> Iterator[list[Service]]:
    """Services a test started; any still running at the end are killed by PID."""
    started: list[Service] = []
    yield started
    for service in started:
        if service.alive():
            service.kill()
        elif not service.stdout.closed:
            service._wait(5)


def start(services: list[Service], env: dict[str, str]) -> Service:
    service = Service(env)
    services.append(service)
    return service


@pytest.fixture
def proxies() -> Iterator[list[EmbeddedBroker]]:
    made: list[EmbeddedBroker] = []
    yield made
    for proxy in made:
        proxy.stop()


def numbers_env(
    in_servers: str, out_servers: str, source: str, sink: str, **extra: Any
) -> dict[str, str]:
    """The environment of a tests.apps.numbers service, with a fresh consumer group."""
    env = {
        "IN_SERVERS": in_servers,
        "OUT_SERVERS": out_servers,
        "GROUP": unique("group"),
        "IN_TOPIC": source,
        "OUT_TOPIC": sink,
    }
    return env | {key: str(value) for key, value in extra.items()}


def produce_numbers(servers: str, topic: str, numbers: range) -> None:
    """Write {"n": n} keyed str(n): keyed, so they spread over the partitions."""
    produce(servers, topic, [{"n": i} for i in numbers], keys=[str(i) for i in numbers])


def output_keys(servers: str, topic: str) -> Counter[bytes]:
    """How many times each key was published, read now (a quick, non-waiting read)."""
    return Counter(m.key() for m in read_all(servers, topic, timeout=3, idle=0.2))


def wait_for_outputs(servers: str, topic: str, count: int, timeout: float) -> None:
    """Wait until ``count`` distinct keys were published."""
    wait_for(lambda: len(output_keys(servers, topic)) >= count, timeout=timeout, interval=0.5)


def input_numbers(servers: str, topic: str, n: int) -> dict[tuple[int, int], bytes]:
    """(partition, offset) -> the key its output gets, for every input."""
    records = read_all(servers, topic, expect=n)
    assert len(records) == n
    return {(m.partition(), m.offset()): str(json.loads(m.value())["n"]).encode() for m in records}


class Stream(threading.Thread):
    """Writes {"n": i} for i < n at about ``rate`` per second, as a live source would."""

    def __init__(self, servers: str, topic: str, n: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.servers, self.topic, self.n, self.rate = servers, topic, n, rate
        self.errors: list[BaseException] = []

    def run(self) -> None:
        producer = Producer({"bootstrap.servers": self.servers, "linger.ms": 5})
        try:
            started = time.monotonic()
            for i in range(self.n):
                producer.produce(self.topic, json.dumps({"n": i}).encode(), str(i).encode())
                producer.poll(max(0.0, started + (i + 1) / self.rate - time.monotonic()))
            assert producer.flush(30) == 0
        except BaseException as exc:  # pragma: no cover - surfaced by the test
            self.errors.append(exc)


def test_sigkill_at_random_moments_loses_nothing_and_duplicates_stay_bounded(
    broker: EmbeddedBroker, broker2: EmbeddedBroker, services: list[Service]
) -> None:
    """Kill -9 three times mid-stream, restart each time; then let one instance finish.

    Duplicate bound: a killed instance leaves uncommitted at most what it processed since its
    last commit, plus what was in flight then. Commits are tried after every batch once
    COMMIT_INTERVAL has passed, so that window is at most COMMIT_INTERVAL + one batch (+ the
    commit's round trip, 0.1 s allowed), and SLOW caps the rate at 1 / SLOW messages a second;
    what is in flight is at most one batch. Each restart reprocesses at most that many.
    """
    rng = random.Random(SEED)
    n, kills, batch, slow, interval = 5000, 3, 20, 0.002, 1.0
    per_kill = math.ceil((interval + batch * slow + 0.1) / slow) + batch
    source, sink = unique("in"), unique("out")
    create_topics(broker.bootstrap_servers, source, partitions=3)
    create_topics(broker2.bootstrap_servers, sink)
    produce_numbers(broker.bootstrap_servers, source, range(n))
    env = numbers_env(
        broker.bootstrap_servers,
        broker2.bootstrap_servers,
        source,
        sink,
        BATCH=batch,
        SLOW=slow,
        COMMIT_INTERVAL=interval,
    )
    published = 0
    for kill in range(kills):
        service = start(services, env)
        wait_for(
            lambda before=published: (
                sum(output_keys(broker2.bootstrap_servers, sink).values()) > before
            ),
            timeout=60,
            interval=0.3,
        )
        time.sleep(rng.uniform(0.2, 2.0))
        service.kill()
        published = sum(output_keys(broker2.bootstrap_servers, sink).values())
        done = len(output_keys(broker2.bootstrap_servers, sink))
        assert done < n, f"kill {kill + 1} came after the stream ended (seed {SEED})"

    last = start(services, env)
    wait_for_outputs(broker2.bootstrap_servers, sink, n, timeout=90)
    assert last.stop() == 0, last.log
    keys = Counter(m.key() for m in read_all(broker2.bootstrap_servers, sink, expect=n))
    assert set(keys) == {str(i).encode() for i in range(n)}  # nothing lost
    duplicates = sum(keys.values()) - n
    assert duplicates <= kills * per_kill, f"{duplicates} duplicates (seed {SEED})"
    inputs = read_all(broker.bootstrap_servers, source, expect=n)
    assert committed(broker.bootstrap_servers, env["GROUP"], source) == end_offsets(inputs)


def test_producer_broker_outage_holds_commits_back_and_delivers_everything_after(
    broker: EmbeddedBroker,
    broker2: EmbeddedBroker,
    services: list[Service],
    proxies: list[EmbeddedBroker],
) -> None:
    n = 2000
    proxy = EmbeddedBroker(origin=broker2.bootstrap_servers).start()
    proxies.append(proxy)
    source, sink = unique("in"), unique("out")
    create_topics(broker.bootstrap_servers, source, partitions=3)
    create_topics(broker2.bootstrap_servers, sink)
    produce_numbers(broker.bootstrap_servers, source, range(n))
    inputs = input_numbers(broker.bootstrap_servers, source, n)
    env = numbers_env(
        broker.bootstrap_servers,
        proxy.bootstrap_servers,
        source,
        sink,
        BATCH=20,
        SLOW=0.004,
        COMMIT_INTERVAL=0.5,
    )
    service = start(services, env)
    wait_for_outputs(broker2.bootstrap_servers, sink, 200, timeout=60)

    proxy.stop()
    cut = time.monotonic()
    time.sleep(1)  # let what was on the wire land
    delivered_at_cut = set(output_keys(broker2.bootstrap_servers, sink))
    checks = 0
    while time.monotonic() - cut < 10:
        assert service.alive(), service.log
        done = committed(broker.bootstrap_servers, env["GROUP"], source)
        delivered = set(output_keys(broker2.bootstrap_servers, sink))
        assert delivered == delivered_at_cut, "outputs arrived while the broker was cut off"
        undelivered = [
            (p, o) for (p, o), key in inputs.items() if o < done.get(p, 0) and key not in delivered
        ]
        assert not undelivered, f"committed past undelivered outputs: {undelivered[:5]}"
        checks += 1
        time.sleep(1)
    assert checks >= 5
    assert len(delivered_at_cut) < n, "the outage came after the stream ended"
    assert "waiting for the producer broker(s)" in service.log

    proxies.append(EmbeddedBroker(proxy.port, origin=broker2.bootstrap_servers).start())
    wait_for_outputs(broker2.bootstrap_servers, sink, n, timeout=60)
    assert service.stop() == 0, service.log
    assert set(output_keys(broker2.bootstrap_servers, sink)) == set(inputs.values())
    records = read_all(broker.bootstrap_servers, source, expect=n)
    assert committed(broker.bootstrap_servers, env["GROUP"], source) == end_offsets(records)


def test_outputs_that_time_out_in_an_outage_are_produced_again(
    broker: EmbeddedBroker,
    broker2: EmbeddedBroker,
    proxies: list[EmbeddedBroker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Outputs that expire in the producer's queue (message.timeout.ms) are not given up."""
    proxy = EmbeddedBroker(origin=broker2.bootstrap_servers).start()
    proxies.append(proxy)
    source, sink = unique("in"), unique("out")
    create_topics(broker.bootstrap_servers, source, partitions=2)
    create_topics(broker2.bootstrap_servers, sink)
    group = unique("group")
    app = KafkaApp(
        unique("app"),
        consumer_config={
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": group,
            **FAST_GROUP,
        },
        producer_config={"bootstrap.servers": proxy.bootstrap_servers, "message.timeout.ms": 1500},
        consumer_timeout=0.2,
        commit_interval=0.5,
    )
    app.process(topic=source, publish_to=sink)(lambda value: [(value, str(value["n"]))])
    with running(app):
        produce_numbers(broker.bootstrap_servers, source, range(100))
        wait_for_outputs(broker2.bootstrap_servers, sink, 100, timeout=30)
        proxy.stop()
        produce_numbers(broker.bootstrap_servers, source, range(100, 300))
        wait_for(lambda: "producing it again" in caplog.text, timeout=20)
        time.sleep(4)  # several rounds of time-outs and retries
        assert sum(committed(broker.bootstrap_servers, group, source).values()) == 100
        proxies.append(EmbeddedBroker(proxy.port, origin=broker2.bootstrap_servers).start())
        wait_for_outputs(broker2.bootstrap_servers, sink, 300, timeout=30)
        wait_for(lambda: sum(committed(broker.bootstrap_servers, group, source).values()) == 300)
    assert "Message timed out" in caplog.text
    assert set(output_keys(broker2.bootstrap_servers, sink)) == {
        str(i).encode() for i in range(300)
    }


def test_consumer_broker_outage_is_waited_out(
    broker: EmbeddedBroker,
    broker2: EmbeddedBroker,
    services: list[Service],
    proxies: list[EmbeddedBroker],
) -> None:
    n, rate = 3000, 200
    proxy = EmbeddedBroker(origin=broker.bootstrap_servers).start()
    proxies.append(proxy)
    source, sink = unique("in"), unique("out")
    create_topics(broker.bootstrap_servers, source, partitions=3)
    create_topics(broker2.bootstrap_servers, sink)
    stream = Stream(broker.bootstrap_servers, source, n, rate)  # inputs keep coming meanwhile
    env = numbers_env(
        proxy.bootstrap_servers,
        broker2.bootstrap_servers,
        source,
        sink,
        BATCH=20,
        COMMIT_INTERVAL=0.5,
    )
    service = start(services, env)
    stream.start()
    wait_for_outputs(broker2.bootstrap_servers, sink, 300, timeout=60)

    proxy.stop()
    cut = time.monotonic()
    time.sleep(2)  # what was fetched before the cut may still be processed
    stalled = len(output_keys(broker2.bootstrap_servers, sink))
    while time.monotonic() - cut < 10:
        assert service.alive(), service.log
        time.sleep(1)
    assert len(output_keys(broker2.bootstrap_servers, sink)) == stalled, "consumed while cut off"
    assert stalled < n
    assert "waiting for the consumer broker(s)" in service.log

    proxies.append(EmbeddedBroker(proxy.port, origin=broker.bootstrap_servers).start())
    stream.join(60)
    assert not stream.errors
    wait_for_outputs(broker2.bootstrap_servers, sink, n, timeout=90)
    assert service.stop() == 0, service.log
    assert set(output_keys(broker2.bootstrap_servers, sink)) == {str(i).encode() for i in range(n)}
    # librdkafka logs every reconnect attempt: about 200 lines in this outage without Kaf's filter.
    assert service.log.count("kaf.librdkafka") <= 20, service.log
    records = read_all(broker.bootstrap_servers, source, expect=n)
    assert committed(broker.bootstrap_servers, env["GROUP"], source) == end_offsets(records)


def test_three_instances_one_killed_the_others_take_over(
    broker: EmbeddedBroker, broker2: EmbeddedBroker, services: list[Service]
) -> None:
    rng = random.Random(SEED)
    n, partitions = 3000, 6
    source, sink = unique("in"), unique("out")
    create_topics(broker.bootstrap_servers, source, partitions=partitions)
    create_topics(broker2.bootstrap_servers, sink)
    produce_numbers(broker.bootstrap_servers, source, range(n))
    inputs = input_numbers(broker.bootstrap_servers, source, n)
    env = numbers_env(
        broker.bootstrap_servers,
        broker2.bootstrap_servers,
        source,
        sink,
        BATCH=20,
        SLOW=0.004,
        COMMIT_INTERVAL=1,
    )
    group = [start(services, env) for _ in range(3)]

    def balanced() -> bool:
        owned = [s.assigned() for s in group]
        return all(owned) and set().union(*owned) == set(range(partitions))

    wait_for(balanced, timeout=60, interval=0.2)
    wait_for_outputs(broker2.bootstrap_servers, sink, 100, timeout=30)
    victim = group.pop(rng.randrange(3))
    owned = victim.assigned()
    victim.kill()
    delivered = set(output_keys(broker2.bootstrap_servers, sink))
    left = [key for (p, _), key in inputs.items() if p in owned and key not in delivered]
    assert left, f"the victim had finished its partitions before the kill (seed {SEED})"

    wait_for_outputs(broker2.bootstrap_servers, sink, n, timeout=90)
    assert owned <= set().union(*(s.assigned() for s in group)), (
        "its partitions were not taken over"
    )
    for survivor in group:
        assert survivor.stop() == 0, survivor.log
    assert set(output_keys(broker2.bootstrap_servers, sink)) == set(inputs.values())
    records = read_all(broker.bootstrap_servers, source, expect=n)
    assert committed(broker.bootstrap_servers, env["GROUP"], source) == end_offsets(records)


def test_poison_mixed_into_a_stream_is_dead_lettered_or_logged_and_the_rest_flows(
    broker: EmbeddedBroker, broker2: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(SEED)
    limit = 2000  # the producer's message.max.bytes: an echo of a bigger input is refused
    poison: dict[str, bytes | None] = {
        "invalid JSON": b'{"n": ',
        "invalid UTF-8": b'{"n": "\xff\xfe"}',
        "empty": b"",
        "null": None,
        "too large when echoed": json.dumps({"n": -1, "pad": "x" * limit}).encode(),
    }
    good = [json.dumps({"n": i}).encode() for i in range(400)]
    stream: list[bytes | None] = list(good)
    for value in poison.values():
        for _ in range(3):
            stream.insert(rng.randrange(len(stream) + 1), value)
    source, sink, dlq = unique("in"), unique("out"), unique("dlq")
    create_topics(broker.bootstrap_servers, source, partitions=3)
    create_topics(broker2.bootstrap_servers, sink, dlq)
    app = KafkaApp(
        unique("echo"),
        consumer_config={
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": unique("g"),
            **FAST_GROUP,
        },
        producer_config={
            "bootstrap.servers": broker2.bootstrap_servers,
            "message.max.bytes": limit,
        },
        consumer_timeout=0.2,
        commit_interval=0.5,
        dead_letter_topic=dlq,
    )
    failed: list[str] = []
    app.on_error(lambda msg, exc: failed.append(type(exc).__name__))
    app.process(topic=source, publish_to=sink)(lambda value: [(value, str(value["n"]))])
    keys = [str(i).encode() for i in range(len(stream))]  # spread evenly over the partitions
    with running(app):
        produce(broker.bootstrap_servers, source, stream, keys=keys, raw=True)
        outputs = read_all(broker2.bootstrap_servers, sink, expect=len(good))
        dead = read_all(broker2.bootstrap_servers, dlq, expect=12)
        # The app keeps running: a second wave after the poison is processed as well.
        produce(broker.bootstrap_servers, source, [{"n": 1000}, {"n": 1001}])
        wait_for_outputs(broker2.bootstrap_servers, sink, len(good) + 2, timeout=20)
    assert sorted(json.loads(m.value())["n"] for m in outputs) == list(range(len(good)))
    dead_letters = Counter(m.value() or b"" for m in dead)  # an empty value may come back as null
    assert dead_letters == {b'{"n": ': 3, b'{"n": "\xff\xfe"}': 3, b"": 6}
    assert Counter(failed) == {"DecodeError": 12, "DeliveryError": 3}
    assert caplog.text.count(f"to {sink} refused: ") == 3
    assert caplog.text.count(f"dead-lettering {source}[") == 3  # the DLQ refuses it too: logged
    records = read_all(broker.bootstrap_servers, source, expect=len(stream) + 2)
    group = app.consumer_config["group.id"]
    assert committed(broker.bootstrap_servers, group, source) == end_offsets(records)

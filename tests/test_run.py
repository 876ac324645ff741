"""The run loop against real embedded brokers: delivery, commits, errors, shutdown, restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kaf import KafkaApp
from kaf.testing import EmbeddedBroker, free_port
from tests.kafkatools import (
    FAST_GROUP,
    committed,
    create_topics,
    end_offsets,
    produce,
    read_all,
    running,
    topic_names,
    unique,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]


def app_for(consumer_servers: str, producer_servers: str, **kwargs: Any) -> tuple[KafkaApp, str]:
    group = unique("group")
    app = KafkaApp(
        unique("app"),
        consumer_config={"bootstrap.servers": consumer_servers, "group.id": group, **FAST_GROUP},
        producer_config={"bootstrap.servers": producer_servers, **kwargs.pop("producer", {})},
        consumer_timeout=0.2,
        commit_interval=kwargs.pop("commit_interval", 0.5),
        **kwargs,
    )
    return app, group


@pytest.mark.slow
def test_original_readme_example_runs_unchanged(tmp_path: Path) -> None:
    """The seed README's example, only the broker address replaced, with its default timeouts."""
    with EmbeddedBroker() as own:  # its topics are the fixed 'foo' and 'bar'
        source = (ROOT / "examples" / "original_readme.py").read_text()
        script = tmp_path / "example.py"
        script.write_text(source.replace("kafka:9092", own.bootstrap_servers))
        produce(own.bootstrap_servers, "foo", [{"number": n} for n in (1, 2, 41)])
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            lines: list[str] = []
            deadline = time.monotonic() + 60  # the default session timeout makes Tansu's join slow
            while sum("Processed message in" in line for line in lines) < 3:
                assert time.monotonic() < deadline, "".join(lines)
                lines.append(proc.stdout.readline())  # type: ignore[union-attr]
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        finally:
            reap(proc)
        assert proc.returncode == 0, out
        outputs = read_all(own.bootstrap_servers, "bar", expect=3)
        assert sorted((json.loads(m.value())["result"], m.key()) for m in outputs) == [
            (2, bytes(1)), (3, bytes(2)), (42, bytes(41)),
        ]  # fmt: skip


def test_consumer_and_producer_on_different_brokers(
    broker: EmbeddedBroker, broker2: EmbeddedBroker
) -> None:
    source, sink = unique("in"), unique("out")
    create_topics(broker.bootstrap_servers, source, partitions=3)
    create_topics(broker2.bootstrap_servers, sink)
    produce(
        broker.bootstrap_servers,
        source,
        [{"n": n} for n in range(300)],
        keys=[str(n) for n in range(300)],
    )
    app, group = app_for(broker.bootstrap_servers, broker2.bootstrap_servers)
    app.process(topic=source, publish_to=sink)(lambda v: [({"r": v["n"] + 1}, str(v["n"]))])
    with running(app):
        outputs = read_all(broker2.bootstrap_servers, sink, expect=300, idle=0.5)
        wait_for(lambda: sum(committed(broker.bootstrap_servers, group, source).values()) == 300)
    assert sorted(json.loads(m.value())["r"] for m in outputs) == list(range(1, 301))
    inputs = read_all(broker.bootstrap_servers, source, expect=300)
    assert committed(broker.bootstrap_servers, group, source) == end_offsets(inputs)
    assert sink not in topic_names(
        broker.bootstrap_servers
    )  # nothing went to the consumer's cluster


def test_hooks_in_order_against_the_broker(broker: EmbeddedBroker) -> None:
    source, sink = unique("in"), unique("out")
    create_topics(broker.bootstrap_servers, source, sink, partitions=1)
    produce(broker.bootstrap_servers, source, [1, 2])
    app, _ = app_for(broker.bootstrap_servers, broker.bootstrap_servers)
    events: list[tuple[str, Any]] = []
    app.process(topic=source, publish_to=sink)(lambda v: [(v * 10, None)])
    app.on_consume(lambda m: events.append(("consume", m.value())))
    app.on_processed(lambda m, s: events.append(("processed", m.value())))
    app.on_published(lambda m: events.append(("published", m.value())))
    with running(app):
        wait_for(lambda: len(events) >= 6)
    assert [e for e in events if e[0] != "published"] == [
        ("consume", b"1"), ("processed", b"1"), ("consume", b"2"), ("processed", b"2"),
    ]  # fmt: skip
    assert [e for e in events if e[0] == "published"] == [
        ("published", b"10"),
        ("published", b"20"),
    ]
    assert events.index(("published", b"10")) > events.index(("processed", b"1"))


def test_poison_inputs_and_a_raising_handler_do_not_stop_the_app(
    broker: EmbeddedBroker, broker2: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    source, sink, dlq = unique("in"), unique("out"), unique("dlq")
    create_topics(broker.bootstrap_servers, source, partitions=1)
    create_topics(broker2.bootstrap_servers, sink, dlq, partitions=1)
    poison = [b'{"n": 1}', b"{broken", b"\xff\xfe", b"", None, b'{"n": 13}', b'{"n": 2}']
    produce(broker.bootstrap_servers, source, poison, raw=True)
    app, group = app_for(broker.bootstrap_servers, broker2.bootstrap_servers, dead_letter_topic=dlq)
    errors: list[str] = []
    app.on_error(lambda m, e: errors.append(f"{m.offset()}:{type(e).__name__}"))

    @app.process(topic=source, publish_to=sink)
    def unlucky(value: Any) -> Any:
        if value["n"] == 13:
            raise ValueError("thirteen")
        yield value, None

    with running(app):
        wait_for(lambda: sum(committed(broker.bootstrap_servers, group, source).values()) == 7)
    assert errors == [
        "1:DecodeError",
        "2:DecodeError",
        "3:DecodeError",
        "4:DecodeError",
        "5:ValueError",
    ]
    assert [json.loads(m.value()) for m in read_all(broker2.bootstrap_servers, sink, expect=2)] == [
        {"n": 1}, {"n": 2},
    ]  # fmt: skip
    dead = read_all(broker2.bootstrap_servers, dlq, expect=5)
    assert [m.value() for m in dead] == [b"{broken", b"\xff\xfe", None, None, b'{"n": 13}'] or [
        m.value() for m in dead
    ] == [b"{broken", b"\xff\xfe", b"", None, b'{"n": 13}']
    assert dict(dead[-1].headers())["kaf.error.message"] == b"thirteen"
    assert f"{source}[0]@5" in caplog.text


def test_an_output_over_the_size_limit_is_refused_and_dead_lettered(broker: EmbeddedBroker) -> None:
    source, sink, dlq = unique("in"), unique("out"), unique("dlq")
    create_topics(broker.bootstrap_servers, source, sink, dlq, partitions=1)
    produce(broker.bootstrap_servers, source, [10, 5000, 20])
    app, group = app_for(
        broker.bootstrap_servers,
        broker.bootstrap_servers,
        producer={"message.max.bytes": 2000},
        dead_letter_topic=dlq,
    )
    errors: list[str] = []
    app.on_error(lambda m, e: errors.append(str(e)))
    app.process(topic=source, publish_to=sink, returns="bytes")(lambda n: [(b"x" * n, None)])
    with running(app):
        wait_for(lambda: sum(committed(broker.bootstrap_servers, group, source).values()) == 3)
    assert [len(m.value()) for m in read_all(broker.bootstrap_servers, sink, expect=2)] == [10, 20]
    [dead] = read_all(broker.bootstrap_servers, dlq, expect=1)
    assert dead.value() == b"5000"
    assert dict(dead.headers())["kaf.error.type"] == b"DeliveryError"
    assert len(errors) == 1 and "refused" in errors[0]


def test_an_output_refused_on_delivery_is_traced_back_to_its_input(
    broker: EmbeddedBroker, broker2: EmbeddedBroker
) -> None:
    """The broker refuses a topic name only when the output arrives (TOPIC_EXCEPTION), long after
    its input was handled: each refusal still reaches on_error and the dead-letter topic with the
    input that yielded it, even though another handler yielded the very same value and key."""
    good, bad, sink, dlq = unique("in"), unique("in"), unique("out"), unique("dlq")
    create_topics(broker.bootstrap_servers, good, bad, partitions=1)
    create_topics(broker2.bootstrap_servers, sink, dlq, partitions=1)
    values = [{"n": i} for i in range(20)]
    produce(broker.bootstrap_servers, good, values)
    produce(broker.bootstrap_servers, bad, values)
    app, group = app_for(broker.bootstrap_servers, broker2.bootstrap_servers, dead_letter_topic=dlq)
    errors: list[tuple[str, int, str]] = []
    app.on_error(lambda m, e: errors.append((m.topic(), m.offset(), type(e).__name__)))

    def echo(value: dict[str, int]) -> Any:
        yield value, str(value["n"])

    app.process(topic=good, publish_to=sink)(echo)
    app.process(topic=bad, publish_to="not a topic!")(echo)
    with running(app):
        wait_for(
            lambda: (
                committed(broker.bootstrap_servers, group, good) == {0: 20}
                and committed(broker.bootstrap_servers, group, bad) == {0: 20}
            )
        )
    assert sorted(errors) == [(bad, i, "DeliveryError") for i in range(20)]
    dead = read_all(broker2.bootstrap_servers, dlq, expect=20)
    assert sorted(
        (dict(m.headers())["kaf.source"].decode(), json.loads(m.value())["n"]) for m in dead
    ) == sorted((f"{bad}[0]@{i}", i) for i in range(20))
    assert len(read_all(broker2.bootstrap_servers, sink, expect=20)) == 20


@pytest.mark.parametrize("batch_size", [1, 500])
def test_outputs_the_client_refuses_are_dead_lettered_one_at_a_time_or_in_a_run(
    broker: EmbeddedBroker, batch_size: int
) -> None:
    """librdkafka refuses a topic name over 512 characters in produce() and in produce_batch()
    alike (_INVALID_ARG): every input is dead-lettered, whichever way its output went."""
    source, dlq = unique("in"), unique("dlq")
    create_topics(broker.bootstrap_servers, source, dlq, partitions=1)
    produce(broker.bootstrap_servers, source, list(range(5)))
    app, group = app_for(
        broker.bootstrap_servers,
        broker.bootstrap_servers,
        dead_letter_topic=dlq,
        consumer_batch_size=batch_size,
    )
    errors: list[str] = []
    app.on_error(lambda m, e: errors.append(type(e).__name__))
    app.process(topic=source, publish_to="x" * 600)(lambda n: [(n, None)])
    with running(app):
        wait_for(lambda: committed(broker.bootstrap_servers, group, source) == {0: 5})
    assert errors == ["DeliveryError"] * 5
    dead = read_all(broker.bootstrap_servers, dlq, expect=5)
    assert sorted(json.loads(m.value()) for m in dead) == list(range(5))


def test_an_unreachable_broker_at_start_is_waited_for(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    servers = f"127.0.0.1:{port}"
    source, sink = unique("in"), unique("out")
    app, group = app_for(servers, servers)
    app.process(topic=source, publish_to=sink)(lambda v: [(v, None)])
    with running(app):
        wait_for(lambda: "waiting for the consumer broker(s)" in caplog.text, timeout=15)
        with EmbeddedBroker(port):
            create_topics(servers, source, sink, partitions=1)
            produce(servers, source, [1, 2, 3])
            wait_for(lambda: sum(committed(servers, group, source).values()) == 3, timeout=40)
            assert len(read_all(servers, sink, expect=3)) == 3
            app.stop()


def reap(proc: subprocess.Popen[str]) -> None:
    """Kill a test's process by PID if it is still running, and collect it."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def run_numbers(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.apps.numbers"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_a_restart_resumes(
    broker: EmbeddedBroker, broker2: EmbeddedBroker
) -> None:
    n = 3000
    source, sink, group = unique("in"), unique("out"), unique("group")
    create_topics(broker.bootstrap_servers, source, partitions=3)
    create_topics(broker2.bootstrap_servers, sink)
    produce(
        broker.bootstrap_servers,
        source,
        [{"n": i} for i in range(n)],
        keys=[str(i) for i in range(n)],
    )
    env = {
        "IN_SERVERS": broker.bootstrap_servers, "OUT_SERVERS": broker2.bootstrap_servers,
        "GROUP": group, "IN_TOPIC": source, "OUT_TOPIC": sink, "BATCH": "50", "SLOW": "0.001",
        "COMMIT_INTERVAL": "60",  # only the shutdown commits: SIGTERM must not lose it
    }  # fmt: skip
    proc = run_numbers(env)
    try:
        wait_for(
            lambda: len(read_all(broker2.bootstrap_servers, sink, timeout=1, idle=0.1)) > 200,
            timeout=40,
        )
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        reap(proc)
    assert proc.returncode == 0, out
    assert "stopped" in out
    first = read_all(broker2.bootstrap_servers, sink)
    done = committed(broker.bootstrap_servers, group, source)
    assert 0 < len(first) < n, "SIGTERM should have come mid-stream"
    assert sum(done.values()) == len(first)  # committed exactly what was delivered
    assert max(Counter(m.key() for m in first).values()) == 1  # no duplicates

    proc = run_numbers(env)
    try:
        wait_for(
            lambda: len(read_all(broker2.bootstrap_servers, sink, timeout=2, idle=0.1)) >= n,
            timeout=60,
        )
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        reap(proc)
    assert proc.returncode == 0, out
    outputs = read_all(broker2.bootstrap_servers, sink, expect=n)
    keys = Counter(m.key() for m in outputs)
    assert len(keys) == n and max(keys.values()) == 1  # nothing lost, nothing twice
    inputs = read_all(broker.bootstrap_servers, source, expect=n)
    assert committed(broker.bootstrap_servers, group, source) == end_offsets(inputs)


@pytest.mark.parametrize("queue_limit", [100_000, 7])
def test_outputs_keep_the_order_of_their_inputs(broker: EmbeddedBroker, queue_limit: int) -> None:
    """Runs go out in one produce_batch call each; with a queue too small for a run they go one
    at a time, waiting for room. Either way a partition's outputs keep the inputs' order."""
    source, sink = unique("in"), unique("out")
    create_topics(broker.bootstrap_servers, source, sink, partitions=1)
    produce(broker.bootstrap_servers, source, list(range(300)))
    app, group = app_for(
        broker.bootstrap_servers,
        broker.bootstrap_servers,
        producer={"queue.buffering.max.messages": queue_limit},
    )
    app.process(topic=source, publish_to=sink)(lambda n: [(n, None), (-n, None)])
    with running(app):
        wait_for(lambda: committed(broker.bootstrap_servers, group, source) == {0: 300})
    outputs = [json.loads(m.value()) for m in read_all(broker.bootstrap_servers, sink, expect=600)]
    assert outputs == [x for n in range(300) for x in (n, -n)]


def test_a_full_producer_queue_is_waited_out(
    broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    source, sink = unique("in"), unique("out")
    create_topics(broker.bootstrap_servers, source, sink, partitions=1)
    produce(broker.bootstrap_servers, source, list(range(20)))
    app, group = app_for(
        broker.bootstrap_servers,
        broker.bootstrap_servers,
        producer={"queue.buffering.max.messages": 5},
    )
    app.process(topic=source, publish_to=sink)(lambda n: [(n, None)] * 10)  # 200 outputs
    with running(app):
        wait_for(lambda: committed(broker.bootstrap_servers, group, source) == {0: 20})
    assert len(read_all(broker.bootstrap_servers, sink, expect=200)) == 200
    assert "producer queue full; waiting for deliveries" in caplog.text

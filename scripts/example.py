"""Run the original README's example, unchanged but for the broker address, on an embedded broker.

Starts a Tansu broker on a free loopback port, writes {"number": n} events to 'foo', runs
examples/original_readme.py in a subprocess, prints what it published to 'bar', then stops
the example (SIGTERM) and the broker, by PID.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kaf.testing import EmbeddedBroker

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = [1, 2, 41]


def main() -> int:
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        servers = broker.bootstrap_servers
        print(f"embedded broker on {servers}")
        admin = AdminClient({"bootstrap.servers": servers})
        for future in admin.create_topics([NewTopic(t, 1, 1) for t in ("foo", "bar")]).values():
            future.result(10)
        producer = Producer({"bootstrap.servers": servers})
        for n in NUMBERS:
            producer.produce("foo", json.dumps({"number": n}).encode())
            print(f"  foo <- {{'number': {n}}}")
        producer.flush(10)

        script = Path(tmp) / "example.py"
        source = (ROOT / "examples" / "original_readme.py").read_text()
        script.write_text(source.replace("kafka:9092", servers))
        print("running the original README example (joining the group takes ~25 s on Tansu")
        print("with librdkafka's default session.timeout.ms) ...")
        app = subprocess.Popen([sys.executable, str(script)])
        try:
            published = read("bar", servers, len(NUMBERS), timeout=90)
        finally:
            app.send_signal(signal.SIGTERM)
            try:
                app.wait(30)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait()
        print(f"the example published to 'bar' (exit code {app.returncode}):")
        for key, value in published:
            print(f"  bar -> key={key!r} value={value}")
        return 0 if len(published) == len(NUMBERS) and app.returncode == 0 else 1


def read(topic: str, servers: str, count: int, timeout: float) -> list[tuple[bytes, str]]:
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "demo-reader"})
    consumer.assign([TopicPartition(topic, 0, -2)])
    records: list[tuple[bytes, str]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            for msg in consumer.consume(10, 0.5):
                if msg.error() is None:
                    records.append((msg.key(), msg.value().decode()))
    finally:
        consumer.close()
    return records


if __name__ == "__main__":
    sys.exit(main())

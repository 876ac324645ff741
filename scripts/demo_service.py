"""Generate a service from the template and run it between two brokers: the main job's demo.

    .venv/bin/python scripts/demo_service.py

Bakes the template with its default answers into a temporary directory, starts two embedded
brokers (the service consumes from one and publishes to the other), writes the service's
.env, runs `python -m <package>` in the generated directory, feeds it a few {"number": n}
events and prints what it published. The service's own log goes to stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from cookiecutter.main import cookiecutter

from kaf.testing import EmbeddedBroker

REPO = Path(__file__).resolve().parents[1]
NUMBERS = [1, 2, 41]


def generate(workdir: Path) -> Path:
    config = workdir / "cookiecutter.yaml"  # keeps cookiecutter's replay files out of $HOME
    config.write_text(f"replay_dir: {workdir / 'replay'}\ncookiecutters_dir: {workdir / 'cc'}\n")
    return Path(
        cookiecutter(str(REPO), no_input=True, output_dir=str(workdir), config_file=str(config))
    )


def produce(bootstrap_servers: str, topic: str, values: list[dict[str, int]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap_servers})
    for value in values:
        producer.produce(topic, json.dumps(value).encode())
    if producer.flush(10):
        raise SystemExit("the demo events were not delivered")


def read(bootstrap_servers: str, topic: str, count: int, service: subprocess.Popen[bytes]) -> list:
    """Read `count` records of `topic` from the beginning, waiting up to a minute."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "demo-reader"})
    records: list = []
    deadline = time.monotonic() + 60
    try:
        while len(records) < count and time.monotonic() < deadline and service.poll() is None:
            if not consumer.assignment():
                metadata = consumer.list_topics(topic, timeout=1).topics.get(topic)
                if metadata is not None and metadata.error is None and metadata.partitions:
                    consumer.assign(
                        [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
                    )
                continue
            records += [m for m in consumer.consume(count, 0.5) if m.error() is None]
    finally:
        consumer.close()
    return records


def show_key(key: bytes | None) -> str:
    # The template's handler keys each result bytes(n): n zero bytes.
    if key and key == bytes(len(key)):
        return f"bytes({len(key)})"
    return repr(key)


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="kaf-demo-") as tmp,
        EmbeddedBroker() as consumer_side,
        EmbeddedBroker() as producer_side,
    ):
        project = generate(Path(tmp))
        answers = json.loads((project / ".cookiecutter.json").read_text())
        (project / ".env").write_text(
            f"KAF_CONSUMER_BOOTSTRAP_SERVERS={consumer_side.bootstrap_servers}\n"
            f"KAF_CONSUMER_GROUP_ID={answers['consumer_group']}\n"
            "KAF_CONSUMER_AUTO_OFFSET_RESET=earliest\n"
            "KAF_CONSUMER_SESSION_TIMEOUT_MS=6000\n"  # the embedded broker joins groups faster
            f"KAF_PRODUCER_BOOTSTRAP_SERVERS={producer_side.bootstrap_servers}\n"
        )
        print(f"generated {answers['project_name']!r} in {project}")
        print(
            f"consumer side: {consumer_side.bootstrap_servers}, producer side: {producer_side.bootstrap_servers}"
        )

        events = [{"number": n} for n in NUMBERS]
        produce(consumer_side.bootstrap_servers, answers["input_topic"], events)
        print(f"sent to {answers['input_topic']}: {', '.join(map(json.dumps, events))}")

        env = {k: v for k, v in os.environ.items() if not k.startswith("KAF_")}
        env["PYTHONPATH"] = str(project / "src")
        service = subprocess.Popen(
            [sys.executable, "-m", answers["package_name"]], cwd=project, env=env, stdout=sys.stderr
        )
        try:
            records = read(
                producer_side.bootstrap_servers, answers["output_topic"], len(NUMBERS), service
            )
        finally:
            if service.poll() is None:
                service.send_signal(signal.SIGTERM)  # by PID, as a container runtime would
            exit_code = service.wait(30)
        for msg in records:
            print(f"published {msg.topic()} key={show_key(msg.key())} value={msg.value().decode()}")
        print(f"service stopped by SIGTERM, exit code {exit_code}")
        return 0 if len(records) == len(NUMBERS) and exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

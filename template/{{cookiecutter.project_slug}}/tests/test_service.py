"""Integration test: the real service, as a process, against an embedded Kafka broker.

The service is configured exactly as in production, through environment variables only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


def produce(bootstrap_servers: str, topic: str, value: dict[str, object]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap_servers})
    producer.produce(topic, json.dumps(value).encode())
    assert producer.flush(10) == 0, "the test event was not delivered"


def read_one(
    bootstrap_servers: str, topic: str, service: subprocess.Popen[bytes], timeout: float
) -> tuple[bytes | None, object]:
    """Return (key, decoded value) of the first message of `topic`, waiting for it to appear."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"test-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    deadline = time.monotonic() + timeout
    try:
        # Assign partitions explicitly once the topic exists: no group rebalance to wait for.
        while not consumer.assignment():
            assert service.poll() is None, f"the service exited with code {service.returncode}"
            assert time.monotonic() < deadline, f"topic {topic} never appeared"
            metadata = consumer.list_topics(topic, timeout=1).topics.get(topic)
            if metadata is not None and metadata.error is None and metadata.partitions:
                consumer.assign(
                    [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
                )
            else:
                time.sleep(0.2)
        while time.monotonic() < deadline:
            assert service.poll() is None, f"the service exited with code {service.returncode}"
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                return msg.key(), json.loads(msg.value())
        raise AssertionError(f"nothing was published to {topic} within {timeout:g}s")
    finally:
        consumer.close()


def stop(service: subprocess.Popen[bytes]) -> int:
    """SIGTERM the service as a container runtime would; return its exit code."""
    service.send_signal(signal.SIGTERM)
    try:
        return service.wait(timeout=30)
    except subprocess.TimeoutExpired:
        service.kill()
        service.wait()
        raise AssertionError("the service did not stop within 30 s of SIGTERM") from None


def test_the_service_turns_41_into_42(kaf_broker, tmp_path) -> None:
    run_id = uuid.uuid4().hex[:8]
    input_topic, output_topic = f"input-{run_id}", f"output-{run_id}"
    # Only this test's settings: none from the developer's shell or .env (cwd is tmp_path).
    env = {key: value for key, value in os.environ.items() if not key.startswith("KAF_")}
    env.update(
        {
            "INPUT_TOPIC": input_topic,
            "OUTPUT_TOPIC": output_topic,
            "KAF_CONSUMER_BOOTSTRAP_SERVERS": kaf_broker.bootstrap_servers,
            "KAF_CONSUMER_GROUP_ID": f"service-{run_id}",
            "KAF_CONSUMER_AUTO_OFFSET_RESET": "earliest",
            # The embedded broker answers a group join after half the session timeout.
            "KAF_CONSUMER_SESSION_TIMEOUT_MS": "6000",
            "KAF_PRODUCER_BOOTSTRAP_SERVERS": kaf_broker.bootstrap_servers,
        }
    )
    produce(kaf_broker.bootstrap_servers, input_topic, {"number": 41})

    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "{{ cookiecutter.package_name }}"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        key, value = read_one(kaf_broker.bootstrap_servers, output_topic, service, timeout=60)
    finally:
        exit_code = stop(service)
        print(log_path.read_text(errors="replace"))  # shown by pytest when the test fails

    assert value == {"result": 42}
    assert key == bytes(41)
    assert exit_code == 0

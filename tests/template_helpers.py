"""Helpers for the template tests: a baked project, a venv to install it in, topic reading."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "template"
TOOLS = Path(sys.executable).parent  # ruff, hadolint, zizmor, ... of this venv
# The Python version the generated project must accept to be installed into this interpreter.
RUNNING_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass
class Baked:
    """The outcome of one cookiecutter run: a project directory, or the failure."""

    exit_code: int
    exception: BaseException | None
    path: Path | None

    @property
    def answers(self) -> dict[str, Any]:
        """The answers recorded in the generated ``.cookiecutter.json``."""
        return json.loads(self.read(".cookiecutter.json"))

    @property
    def package(self) -> str:
        return str(self.answers["package_name"])

    def read(self, relative: str) -> str:
        assert self.path is not None, f"nothing was generated: {self.exception!r}"
        return (self.path / relative).read_text()

    def files(self) -> list[str]:
        """Every generated file, relative to the project, sorted."""
        assert self.path is not None, f"nothing was generated: {self.exception!r}"
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file())

    def run(self, *command: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a command in the project directory, capturing its output as text."""
        return subprocess.run(
            [str(c) for c in command], cwd=self.path, capture_output=True, text=True, **kwargs
        )


def tool(name: str) -> Path:
    return TOOLS / name


def active_settings(env_file_text: str) -> dict[str, str]:
    """The ``NAME=value`` lines of a .env file that are not commented out."""
    pairs = re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", env_file_text, flags=re.MULTILINE)
    return dict(pairs)


def mentioned_settings(env_file_text: str) -> set[str]:
    """Every variable a .env file sets or shows in a commented-out line."""
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", env_file_text, flags=re.MULTILINE))


def edited(text: str, replacements: dict[str, str]) -> str:
    """``text`` with each key replaced by its value; every key must occur (the file changed?)."""
    for old, new in replacements.items():
        assert old in text, f"{old!r} not found"
        text = text.replace(old, new)
    return text


def make_venv(path: Path) -> Path:
    """Create a venv that also sees this venv's packages (kaf-runtime from this checkout,
    confluent-kafka, pytest, hatchling): installing into it downloads nothing. Returns its python.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # addsitedir (unlike a plain path line) also runs this venv's .pth files: the editable
    # kaf-runtime install is one.
    ours = sysconfig.get_path("purelib")
    (Path(purelib) / "_kaf_dev_venv.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return python


def env_without_kaf() -> dict[str, str]:
    """This process's environment less anything that would configure a service behind our back."""
    drop = ("KAF_", "INPUT_TOPIC", "OUTPUT_TOPIC", "PYTHONPATH")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def produce_json(bootstrap_servers: str, topic: str, values: list[Any]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap_servers})
    for value in values:
        producer.produce(topic, json.dumps(value).encode())
    assert producer.flush(10) == 0, "not every test event was delivered"


def read_records(
    bootstrap_servers: str,
    topic: str,
    count: int,
    service: subprocess.Popen[bytes],
    timeout: float = 30.0,
) -> list[tuple[bytes | None, Any]]:
    """Read ``count`` records of ``topic`` from the beginning: (key, JSON-decoded value).

    Waits for the topic to exist, then reads by assigning every partition (no group join).
    Fails at once if ``service``, the process expected to publish them, exits.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"template-test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    deadline = time.monotonic() + timeout
    records: list[tuple[bytes | None, Any]] = []
    try:
        while not consumer.assignment():
            assert service.poll() is None, f"the service exited with code {service.returncode}"
            assert time.monotonic() < deadline, f"topic {topic} never appeared"
            metadata = consumer.list_topics(topic, timeout=1).topics.get(topic)
            if metadata is not None and metadata.error is None and metadata.partitions:
                partitions = [
                    TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions
                ]
                consumer.assign(partitions)
            else:
                time.sleep(0.2)
        while len(records) < count and time.monotonic() < deadline:
            assert service.poll() is None, f"the service exited with code {service.returncode}"
            for msg in consumer.consume(count, 0.5):
                if msg.error() is None:
                    records.append((msg.key(), json.loads(msg.value())))
        return records
    finally:
        consumer.close()


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM a process, as a container runtime would; return its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"pid {process.pid} ignored SIGTERM for {timeout:g}s") from None

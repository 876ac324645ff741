"""Benchmark Kaf against a hand-written confluent-kafka loop (and its peers) on embedded brokers.

    .venv/bin/python bench/run.py --messages 100000 --runs 3

Starts two embedded Tansu brokers, fills a 4-partition input topic once with N JSON messages of
about 150 bytes, then runs every variant of ``bench/variants.py`` ``--runs`` times, interleaved
(the order rotates each round), each in its own process with a fresh consumer group and a fresh
output topic. This process counts the outputs by reading the output topic; a run ends when all N
arrived, then the variant gets SIGTERM, must exit 0 and must have committed all N inputs.

Reported per variant: msgs/s = N / (time of the last output - time of the first output), the
median over runs; its ratio to the hand-written loop (the median of the per-round ratios); peak
RSS of the variant's process (VmHWM, read just before it is stopped); and the time from starting the process to
its first output (interpreter start, imports, joining the group, first fetch); CPU time of the
variant's process per message. The table is printed and written to ``--output``.

Quix Streams and FastStream run only when importable. Quix Streams pins confluent-kafka < 2.13,
so give the peers a venv of their own rather than the project's:

    python3 -m venv /tmp/kaf-peers
    /tmp/kaf-peers/bin/pip install -e './kaf-runtime[dev]' quixstreams 'faststream[confluent]'
    /tmp/kaf-peers/bin/python bench/run.py --messages 100000 --runs 3
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition, libversion
from confluent_kafka.admin import AdminClient, NewTopic

import kaf
from kaf.testing import EmbeddedBroker

HERE = Path(__file__).resolve().parent
PARTITIONS = 4
VARIANTS = {  # name: (what it is, package that must be importable)
    "confluent": ("(a) hand-written confluent-kafka loop, batch 500, tracked commits", None),
    "confluent-json": ("(a') the same loop with plain json.loads / json.dumps", None),
    "confluent-batch": ("(a'') the same loop, each batch's outputs in one produce_batch()", None),
    "kaf": ("(b) Kaf, README handler, default consumer_batch_size=500", None),
    "kaf-batch1": ("(b') Kaf, README handler, consumer_batch_size=1", None),
    "kaf-2brokers": ("(c) Kaf, consumer and producer on two brokers", None),
    "quixstreams": ("Quix Streams, StreamingDataFrame.apply().to_topic()", "quixstreams"),
    "faststream": ("FastStream (confluent), batch subscriber, confirmed publishes", "faststream"),
}
BASELINE = "confluent"


@dataclass
class Run:
    variant: str
    rate: float = 0.0  # msgs/s
    first_output: float = 0.0  # seconds from process start
    rss_mb: float = 0.0
    cpu_us: float = 0.0  # CPU time of the variant's process per message, startup included
    outputs: int = 0
    committed: int = 0
    exit_code: int | None = None
    problem: str = ""


@dataclass
class Bench:
    servers: str
    other_servers: str
    source: str
    messages: int
    timeout: float
    workdir: Path
    runs: list[Run] = field(default_factory=list)


def unique(prefix: str) -> str:
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(servers: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": servers})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(10)


def fill(servers: str, topic: str, n: int) -> None:
    """Write N values of about 150 bytes, each keyed by its own ``id``."""
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 20, "acks": "all"})
    text = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " * 2
    for i in range(n):
        key = f"key-{i:08d}"
        value = {"id": key, "number": i, "text": text[: 150 - 55]}
        while True:
            try:
                producer.produce(topic, json.dumps(value).encode(), key.encode())
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(60) != 0:
        raise SystemExit("filling the input topic did not finish within 60 s")


def reader(servers: str, topic: str) -> Consumer:
    consumer = Consumer(
        {"bootstrap.servers": servers, "group.id": unique("reader"), "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, -2) for p in range(PARTITIONS)])  # -2: beginning
    return consumer


def count_records(servers: str, topic: str, expect: int, timeout: float) -> int:
    consumer = reader(servers, topic)
    seen, deadline, idle_since = 0, time.monotonic() + timeout, time.monotonic()
    try:
        while time.monotonic() < deadline:
            got = sum(1 for m in consumer.consume(10000, 0.2) if m.error() is None)
            seen += got
            if got:
                idle_since = time.monotonic()
            elif seen >= expect and time.monotonic() - idle_since > 1.0:
                break
        return seen
    finally:
        consumer.close()


def committed_total(servers: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": servers, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        consumer.close()


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, Any]:
    """Reap ``proc`` with wait4, killing it after ``timeout``; return its exit code and rusage."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        if time.monotonic() > deadline:
            proc.kill()
            deadline = float("inf")
        time.sleep(0.05)


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a running process. Not ru_maxrss: a child started with vfork, as subprocess
    does, reports at least its parent's peak there, which is this script's."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return 0.0


def run_once(bench: Bench, variant: str) -> Run:
    result = Run(variant)
    out_servers = bench.other_servers if variant == "kaf-2brokers" else bench.servers
    sink, group = unique("out"), unique("group")
    create_topic(out_servers, sink)
    consumer = reader(out_servers, sink)
    log = bench.workdir / f"{variant}-{len(bench.runs)}.log"
    command = [sys.executable, str(HERE / "variants.py"), variant]
    command += [bench.servers, out_servers, bench.source, sink, group]
    try:
        with log.open("wb") as out:
            started = time.monotonic()
            proc = subprocess.Popen(command, cwd=bench.workdir, stdout=out, stderr=out)
        first = last = 0.0
        try:
            deadline = started + bench.timeout
            while result.outputs < bench.messages and time.monotonic() < deadline:
                got = sum(1 for m in consumer.consume(10000, 0.05) if m.error() is None)
                if got:
                    last = time.monotonic()
                    first = first or last
                    result.outputs += got
                elif proc.poll() is not None:
                    break
            if result.outputs < bench.messages:
                result.problem = f"{result.outputs} of {bench.messages} outputs"
                result.problem += (
                    " (exited)" if proc.poll() is not None else f" in {bench.timeout:g}s"
                )
        finally:
            if proc.poll() is None:
                result.rss_mb = peak_rss_mb(proc.pid)
                proc.send_signal(signal.SIGTERM)
            result.exit_code, usage = wait_exit(proc, 60)
            cpu = usage.ru_utime + usage.ru_stime
            result.cpu_us = cpu / max(result.outputs, 1) * 1e6
    finally:
        consumer.close()
    if first:
        result.first_output = first - started
        if last > first:
            result.rate = result.outputs / (last - first)
    result.committed = committed_total(bench.servers, group, bench.source)
    if result.exit_code != 0:
        result.problem += f" exit code {result.exit_code}"
        tail = log.read_text(errors="replace").splitlines()[-15:]
        print(f"{variant} exited with {result.exit_code}; its log ends:", *tail, sep="\n  ")
    elif result.committed != bench.messages and not result.problem:
        result.problem = f"committed {result.committed} of {bench.messages} inputs"
    return result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def table(bench: Bench, variants: list[str]) -> list[str]:
    """The results as Markdown table rows."""
    base = {i: r for i, r in enumerate(r for r in bench.runs if r.variant == BASELINE)}
    rows = [
        "| variant | msgs/s (median) | each run | ratio to (a) | CPU/msg | peak RSS | first output |",
        "|---|--:|---|--:|--:|--:|--:|",
    ]
    notes = []
    for name in variants:
        runs = [r for r in bench.runs if r.variant == name]
        rates = [r.rate for r in runs]
        ratios = [r.rate / base[i].rate for i, r in enumerate(runs) if base.get(i) and base[i].rate]
        rows.append(
            f"| {VARIANTS[name][0]} | {median(rates):,.0f} | "
            f"{' / '.join(f'{x:,.0f}' for x in rates)} | {median(ratios):.2f} | "
            f"{median([r.cpu_us for r in runs]):.1f} µs | "
            f"{median([r.rss_mb for r in runs]):.0f} MB | "
            f"{median([r.first_output for r in runs]):.1f} s |"
        )
        notes += [f"- {name}, run {i + 1}: {r.problem}" for i, r in enumerate(runs) if r.problem]
    return rows + (["", *notes] if notes else [])


def versions() -> str:
    found = [f"kaf {kaf.__version__}"]
    for package in ("confluent-kafka", "quixstreams", "faststream"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{package} {importlib.metadata.version(package)}")
    return ", ".join(found) + f", librdkafka {libversion()[0]}"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def report(bench: Bench, variants: list[str], skipped: list[str], argv: list[str]) -> str:
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):  # shown relative to the repository when inside it
        python = python.relative_to(HERE.parent)
    command = shlex.join([str(python), "bench/run.py", *argv])
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}  ",
        f"Machine: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, "
        f"{versions()}  ",
        f"Job: {bench.messages:,} JSON messages of ~150 bytes in 4 partitions; parse, add one, "
        "emit JSON with the same key; at-least-once. Brokers: embedded Tansu on 127.0.0.1, "
        "sharing the machine with the variant and the reader.",
        "",
        *table(bench, variants),
        "",
        "msgs/s = N / (last output - first output) as seen by a reader of the output topic; "
        "ratio = median of the per-round ratios to (a); CPU/msg = user + system time of the "
        "variant's process (all its threads, start-up included) / N; peak RSS = VmHWM of "
        "the variant's process, read before stopping it; first output = from starting the process (includes joining "
        "the consumer group, about 3 s on Tansu).",
    ]
    if skipped:
        lines += ["", f"Not installed, skipped: {', '.join(skipped)}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000, help="N (default 100000)")
    parser.add_argument("--runs", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated subset of: {', '.join(VARIANTS)}",
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds allowed per run")
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(wanted) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(unknown)}")
    skipped = [v for v in wanted if VARIANTS[v][1] and not importlib.util.find_spec(VARIANTS[v][1])]
    variants = [v for v in wanted if v not in skipped]
    if BASELINE not in variants:
        parser.error(f"the baseline '{BASELINE}' must be among the variants")

    with (
        tempfile.TemporaryDirectory(prefix="kaf-bench-") as tmp,
        EmbeddedBroker() as broker,
        EmbeddedBroker() as other,
    ):
        source = unique("in")
        bench = Bench(
            broker.bootstrap_servers,
            other.bootstrap_servers,
            source,
            args.messages,
            args.timeout,
            Path(tmp),
        )
        print(f"filling {source} with {args.messages:,} messages ...", flush=True)
        create_topic(broker.bootstrap_servers, source)
        fill(broker.bootstrap_servers, source, args.messages)
        present = count_records(broker.bootstrap_servers, source, args.messages, 60)
        if present != args.messages:
            raise SystemExit(f"the input topic holds {present} records, not {args.messages}")
        for round_ in range(args.runs):
            shift = round_ % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                result = run_once(bench, variant)
                bench.runs.append(result)
                print(
                    f"round {round_ + 1}/{args.runs} {variant:13} {result.rate:>9,.0f} msgs/s "
                    f"cpu {result.cpu_us:5.1f} us/msg  rss {result.rss_mb:4.0f} MB  "
                    f"first output {result.first_output:4.1f} s"
                    f"  {result.problem}",
                    flush=True,
                )
        text = report(bench, variants, skipped, argv)
    print()
    print(text)
    args.output.write_text(text)
    print(f"written to {args.output}")
    return 0 if all(not r.problem for r in bench.runs) else 1


if __name__ == "__main__":
    sys.exit(main())

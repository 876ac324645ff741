"""A Kaf service for process-level tests: {"n": n} -> {"n": n, "result": n + 1}, keyed str(n).

Configured by environment variables so a test can start, kill and restart it:
IN_SERVERS, OUT_SERVERS, GROUP, IN_TOPIC, OUT_TOPIC, and optionally BATCH, COMMIT_INTERVAL,
DLQ (a dead-letter topic) and SLOW (seconds to sleep per message).
"""

from __future__ import annotations

import os
import time
from typing import Any

from kaf import KafkaApp

env = os.environ
app = KafkaApp(
    "numbers",
    consumer_config={
        "bootstrap.servers": env["IN_SERVERS"],
        "group.id": env["GROUP"],
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    },
    producer_config={"bootstrap.servers": env["OUT_SERVERS"]},
    consumer_timeout=0.2,
    consumer_batch_size=int(env.get("BATCH", "100")),
    commit_interval=float(env.get("COMMIT_INTERVAL", "1")),
    dead_letter_topic=env.get("DLQ") or None,
)
slow = float(env.get("SLOW", "0"))


@app.process(topic=env["IN_TOPIC"], publish_to=env["OUT_TOPIC"], accepts="json", returns="json")
def add_one(value: dict[str, Any]) -> Any:
    if slow:
        time.sleep(slow)
    yield {"n": value["n"], "result": value["n"] + 1}, str(value["n"])


if __name__ == "__main__":
    app.run()

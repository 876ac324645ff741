"""Delivery tracking and offset commits: at-least-once across two clusters.

Each input that produced outputs gets a ``Pending`` entry, which is also the delivery callback
of its outputs. A partition may be committed up to its first input that still has outputs in
flight; with none in flight, up to the last processed offset + 1. Offsets only move forward,
and nothing is committed for an input whose outputs the producer's broker has not acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

logger = logging.getLogger("kaf")

# Errors about the message itself: sending it again cannot succeed. Everything else (a broker
# down, a timeout, a leader moving, a missing topic) is about the world and is retried.
FINAL_DELIVERY_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError._INVALID_ARG,
        KafkaError._KEY_SERIALIZATION,
        KafkaError._VALUE_SERIALIZATION,
    }
)

# Commit errors that mean the partitions are no longer ours: the rebalance will sort it out.
_GONE = frozenset(
    {
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError._NO_OFFSET,
        KafkaError._STATE,
    }
)


class Pending:
    """The outputs of one input still in flight; called by librdkafka for each delivery."""

    __slots__ = ("checkpoint", "remaining", "source")

    def __init__(self, checkpoint: Checkpoint, source: Any, remaining: int) -> None:
        self.checkpoint = checkpoint
        self.source = source
        self.remaining = remaining

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.remaining -= 1
            if self.checkpoint.on_published is not None:
                self.checkpoint.on_published(msg)
        else:
            self.checkpoint.on_failed(self, err, msg)


class _Partition:
    # Offsets are read from the messages only when committing: processed() runs per message.
    __slots__ = ("committed", "last", "pending")

    def __init__(self) -> None:
        self.last: Any = None  # the last processed message
        self.committed = -1
        self.pending: deque[Pending] = deque()

    def committable(self) -> int:
        pending = self.pending
        while pending and pending[0].remaining <= 0:
            pending.popleft()
        if pending:  # up to, not including, the first input with outputs in flight
            first: int = pending[0].source.offset()
            return first
        if self.last is None:
            return -1
        last: int = self.last.offset()
        return last + 1


class Checkpoint:
    """Which input offsets are safe to commit, and committing them."""

    def __init__(
        self,
        consumer: Any,
        *,
        on_published: Callable[[Any], None] | None,
        on_failed: Callable[[Pending, KafkaError, Any], None],
    ) -> None:
        self.consumer = consumer
        self.on_published = on_published
        self.on_failed = on_failed
        self.partitions: dict[tuple[str, int], _Partition] = {}

    def processed(self, msg: Any, outputs: int) -> Pending | None:
        """Record that ``msg`` was handled; return its ``Pending`` entry if it has outputs."""
        key = (msg.topic(), msg.partition())
        partition = self.partitions.get(key)
        if partition is None:
            partition = self.partitions[key] = _Partition()
        partition.last = msg
        if not outputs:
            return None
        queue = partition.pending
        # Drop delivered entries as we go, not only at commit time: each holds its input message,
        # and thousands of them alive until the next commit cost memory and garbage collection.
        while queue and queue[0].remaining <= 0:
            queue.popleft()
        pending = Pending(self, msg, outputs)
        queue.append(pending)
        return pending

    def commit(self, only: Iterable[tuple[str, int]] | None = None, *, wait: bool = True) -> None:
        """Commit every partition (or ``only`` those) up to what has been fully delivered.

        With ``wait``, retries until the broker accepts it, unless the partitions stopped being
        ours. Without (the periodic commit), it returns at once: the loop keeps polling while the
        consumer's broker is away, and ``commit_result`` re-arms a commit that failed.
        """
        keys = self.partitions.keys() if only is None else [k for k in only if k in self.partitions]
        offsets = []
        for key in keys:
            partition = self.partitions[key]
            offset = partition.committable()
            if offset > partition.committed:
                offsets.append(TopicPartition(key[0], key[1], offset))
        if not offsets:
            return
        if not wait:
            self.consumer.commit(offsets=offsets, asynchronous=True)
            for tp in offsets:
                self.partitions[(tp.topic, tp.partition)].committed = tp.offset
            return
        delay = 0.1
        while True:
            try:
                results = self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() in _GONE:
                    logger.warning("commit skipped, the partitions are being reassigned: %s", err)
                    return
                logger.warning("commit failed (%s); retrying in %.1fs", err, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            break
        for tp in results or offsets:
            if tp.error is not None:
                logger.warning("commit of %s[%d] failed: %s", tp.topic, tp.partition, tp.error)
                continue
            done = self.partitions.get((tp.topic, tp.partition))
            if done is not None:
                done.committed = max(done.committed, tp.offset)
        logger.debug(
            "committed %s", ", ".join(f"{t.topic}[{t.partition}]@{t.offset}" for t in offsets)
        )

    def commit_result(self, err: KafkaError | None, offsets: list[TopicPartition]) -> None:
        """librdkafka's ``on_commit``: a failed commit is sent again at the next interval."""
        for tp in offsets:
            if err is None and tp.error is None:
                continue
            logger.warning("commit of %s[%d] failed: %s", tp.topic, tp.partition, tp.error or err)
            partition = self.partitions.get((tp.topic, tp.partition))
            if partition is not None and partition.committed <= tp.offset:
                partition.committed = -1

    def forget(self, keys: Iterable[tuple[str, int]]) -> None:
        """Drop state for partitions that are no longer assigned."""
        for key in keys:
            self.partitions.pop(key, None)

"""Delivery tracking and offset commits: at-least-once across two clusters.

Inputs are tracked in batches, each what the loop handles between two rounds of delivery
reports (a few milliseconds). A ``Batch`` holds the last input of each of its partitions and
counts its outputs still in flight (its ``delivered`` method is their delivery callback). Offsets
are committed up to the end of the newest batch that, with every batch before it, is sealed and
has all its outputs acknowledged. Offsets only move forward, and nothing is committed for an
input whose outputs the producer's broker has not acknowledged.

Tracking per batch, not per input, is what a hand-written loop does: an entry per input cost
about 1 µs per message (bench/overhead.py). The price is coarser commits: a partition's offset
waits for the whole batch.
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

Key = tuple[str, int]  # (topic, partition)


class Batch:
    """Inputs handled together: their last input per partition and their outputs in flight."""

    __slots__ = ("checkpoint", "claimed", "last", "remaining", "sent")

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self.last: dict[Key, Any] = {}
        # Outputs in flight, plus one held until the batch is sealed: no more inputs join it.
        self.remaining = 1
        # Runs of outputs handed to the producer: (topic, outputs, owners), owners[i] being the
        # input that yielded outputs[i]. A delivery report of a refused output names no input,
        # so ``source_of`` finds it by content. The outputs are the very dicts handed to
        # produce_batch: a record of its own per output, alive until delivery, had doubled the
        # garbage collections.
        self.sent: list[tuple[str, list[dict[str, Any]], list[Any]]] = []
        self.claimed: set[tuple[int, int]] | None = None

    def delivered(self, err: KafkaError | None, msg: Any) -> None:
        """librdkafka's delivery callback, once per output."""
        if err is None:
            self.remaining -= 1
            if self.checkpoint.on_published is not None:
                self.checkpoint.on_published(msg)
        else:
            self.checkpoint.on_failed(self, err, msg)

    def record(self, topic: str, outputs: list[dict[str, Any]], owners: list[Any]) -> None:
        """Count a run of outputs to ``topic`` as in flight."""
        self.remaining += len(outputs)
        self.sent.append((topic, outputs, owners))

    def source_of(self, topic: str, value: bytes | None, key: bytes | None) -> Any:
        """The input that yielded an output, matched by topic, value and key.

        Every output of the batch is recorded and is refused at most once, so a match is always
        found. Identical outputs share a fate (a refusal is about the message), so each refusal
        claims the next unclaimed match.
        """
        claimed = self.claimed = self.claimed or set()
        for i, (to, outputs, owners) in enumerate(self.sent):
            if to != topic:
                continue
            for j, out in enumerate(outputs):
                if out["value"] == value and out["key"] == key and (i, j) not in claimed:
                    claimed.add((i, j))
                    return owners[j]
        raise LookupError("no output of this batch has that value and key")


class Checkpoint:
    """Which input offsets are safe to commit, and committing them."""

    def __init__(
        self,
        consumer: Any,
        *,
        on_published: Callable[[Any], None] | None,
        on_failed: Callable[[Batch, KafkaError, Any], None],
    ) -> None:
        self.consumer = consumer
        self.on_published = on_published
        self.on_failed = on_failed
        self.current = Batch(self)  # the batch new inputs join
        self.batches: deque[Batch] = deque([self.current])  # in order, delivered ones dropped
        self.done: dict[Key, Any] = {}  # the last input of each partition safe to commit
        self.committed: dict[Key, int] = {}

    def seal(self) -> None:
        """Close the current batch to new inputs and open the next one."""
        if not self.current.last:
            return  # nothing joined it: keep it open
        self.current.remaining -= 1
        self.current = Batch(self)
        self.batches.append(self.current)
        self.settle()

    def settle(self) -> None:
        """Move fully delivered batches at the front into ``done``.

        Runs per batch, not only at commit time: each batch holds its input messages, and
        thousands of them alive until the next commit cost memory and garbage collection.
        """
        batches, done = self.batches, self.done
        while batches and batches[0].remaining <= 0:
            done.update(batches.popleft().last)

    def commit(self, only: Iterable[Key] | None = None, *, wait: bool = True) -> None:
        """Commit every partition (or ``only`` those) up to what has been fully delivered.

        With ``wait``, retries until the broker accepts it, unless the partitions stopped being
        ours. Without (the periodic commit), it returns at once: the loop keeps polling while the
        consumer's broker is away, and ``commit_result`` re-arms a commit that failed.
        """
        self.settle()
        done, committed = self.done, self.committed
        keys = done.keys() if only is None else [k for k in only if k in done]
        offsets = []
        for key in keys:
            offset = done[key].offset() + 1
            if offset > committed.get(key, -1):
                offsets.append(TopicPartition(key[0], key[1], offset))
        if not offsets:
            return
        if not wait:
            self.consumer.commit(offsets=offsets, asynchronous=True)
            for tp in offsets:
                committed[(tp.topic, tp.partition)] = tp.offset
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
            key = (tp.topic, tp.partition)
            if key in done:
                committed[key] = max(committed.get(key, -1), tp.offset)
        logger.debug(
            "committed %s", ", ".join(f"{t.topic}[{t.partition}]@{t.offset}" for t in offsets)
        )

    def commit_result(self, err: KafkaError | None, offsets: list[TopicPartition]) -> None:
        """librdkafka's ``on_commit``: a failed commit is sent again at the next interval."""
        for tp in offsets:
            if err is None and tp.error is None:
                continue
            logger.warning("commit of %s[%d] failed: %s", tp.topic, tp.partition, tp.error or err)
            key = (tp.topic, tp.partition)
            if self.committed.get(key, -1) <= tp.offset:
                self.committed.pop(key, None)

    def forget(self, keys: Iterable[Key]) -> None:
        """Drop state for partitions that are no longer assigned, in flight included."""
        for key in keys:
            self.done.pop(key, None)
            self.committed.pop(key, None)
            for batch in self.batches:
                batch.last.pop(key, None)

"""``KafkaApp``: register handlers and hooks, then ``run()``.

Registration and wiring only; the loop lives in ``kaf._loop``. Building an app does no I/O
and reads no environment, so a module that defines one can be imported by unit tests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kaf import serde
from kaf._processor import Processor
from kaf.config import check_consumer, check_producer, config_from_env
from kaf.errors import SetupError

F = TypeVar("F", bound=Callable[..., Any])
EVENTS = ("consume", "processed", "published", "error")


class KafkaApp:
    """A consume -> transform -> produce service.

    ``consumer_config`` and ``producer_config`` are independent librdkafka configurations, so
    the consumer and the producer may use different clusters. Left out, each is read from the
    environment (``KAF_CONSUMER_*`` / ``KAF_PRODUCER_*``, and a ``.env`` file) when the app
    starts. ``consumer_batch_size`` messages are polled at a time, waiting at most
    ``consumer_timeout`` seconds. Offsets are committed every ``commit_interval`` seconds, up to
    the last input whose outputs are all acknowledged. Inputs that fail (a raising handler,
    undecodable input, a refused output) go to ``dead_letter_topic`` on the producer's broker,
    if one is given.
    """

    def __init__(
        self,
        name: str,
        consumer_config: Mapping[str, Any] | None = None,
        producer_config: Mapping[str, Any] | None = None,
        consumer_timeout: float = 1.0,
        consumer_batch_size: int = 500,
        *,
        commit_interval: float = 5.0,
        dead_letter_topic: str | None = None,
    ) -> None:
        if consumer_batch_size < 1:
            raise SetupError(f"consumer_batch_size must be at least 1, got {consumer_batch_size}")
        if consumer_timeout < 0 or commit_interval <= 0:
            raise SetupError("consumer_timeout must be >= 0 and commit_interval > 0 (seconds)")
        self.name = name
        self.consumer_timeout = float(consumer_timeout)
        self.consumer_batch_size = int(consumer_batch_size)
        self.commit_interval = float(commit_interval)
        self.dead_letter_topic = dead_letter_topic
        self.logger = logging.getLogger(f"kaf.app.{name}")
        self.processors: dict[str, Processor] = {}
        self.hooks: dict[str, list[Callable[..., Any]]] = {event: [] for event in EVENTS}
        self._explicit = {"consumer": consumer_config, "producer": producer_config}
        self._resolved: dict[str, dict[str, Any]] = {}
        if consumer_config is not None:
            check_consumer(consumer_config, source="consumer_config")
        self._running = False
        self.stop_requested = threading.Event()  # set by stop(); the loop checks it per batch

    # -- configuration ----------------------------------------------------------------------

    @property
    def consumer_config(self) -> dict[str, Any]:
        """The consumer's librdkafka config: as given, or from ``KAF_CONSUMER_*`` variables."""
        return self._config("consumer")

    @property
    def producer_config(self) -> dict[str, Any]:
        """The producer's librdkafka config: as given, or from ``KAF_PRODUCER_*`` variables."""
        return self._config("producer")

    def _config(self, role: str) -> dict[str, Any]:
        if role not in self._resolved:
            explicit = self._explicit[role]
            source = f"{role}_config" if explicit is not None else f"KAF_{role.upper()}_"
            config = dict(explicit) if explicit is not None else config_from_env(source)
            (check_consumer if role == "consumer" else check_producer)(config, source=source)
            self._resolved[role] = config
        return self._resolved[role]

    # -- registration -----------------------------------------------------------------------

    def add_processor(
        self,
        handler: Callable[..., Any],
        *,
        topic: str,
        publish_to: str | None = None,
        accepts: str | None = "json",
        returns: str = "json",
    ) -> None:
        """Register ``handler`` for ``topic``: the explicit form of ``@app.process``."""
        self._check_not_running("add a processor")
        if not topic or not isinstance(topic, str):
            raise SetupError(f"topic must be a non-empty str, got {topic!r}")
        if topic in self.processors:
            raise SetupError(
                f"topic {topic!r} already has a handler ({self.processors[topic].name}); "
                "handle it in one function, or register a different topic"
            )
        if not callable(handler):
            raise SetupError(f"the handler for {topic!r} must be callable, got {handler!r}")
        self.processors[topic] = Processor(
            handler=handler,
            topic=topic,
            publish_to=publish_to,
            accepts=accepts,
            returns=returns,
            decode=serde.decoder(accepts),
            encode=serde.encoder(returns),
        )

    def process(
        self,
        topic: str,
        publish_to: str | None = None,
        accepts: str | None = "json",
        returns: str = "json",
    ) -> Callable[[F], F]:
        """Register a generator handler for ``topic``; it yields ``(value, key)`` outputs.

        ::

            @app.process(topic='foo', publish_to='bar', accepts='json', returns='json')
            def add_one(input):
                yield {'result': input['number'] + 1}, None

        The function is returned unchanged, so it stays testable on its own.
        """

        def register(handler: F) -> F:
            self.add_processor(
                handler, topic=topic, publish_to=publish_to, accepts=accepts, returns=returns
            )
            return handler

        return register

    def _hook(self, event: str, hook: F) -> F:
        self._check_not_running(f"add an on_{event} hook")
        self.hooks[event].append(hook)
        return hook

    def on_consume(self, hook: F) -> F:
        """Call ``hook(msg)`` for each input message, before its handler."""
        return self._hook("consume", hook)

    def on_processed(self, hook: F) -> F:
        """Call ``hook(msg, seconds_elapsed)`` after a handler succeeded and its outputs are encoded.

        The outputs go to the producer right after, with those of the rest of the consumed batch.

        ::

            @app.on_processed
            def done(msg, seconds_elapsed):
                app.logger.info(f'Processed message in {seconds_elapsed} seconds')
        """
        return self._hook("processed", hook)

    def on_published(self, hook: F) -> F:
        """Call ``hook(msg)`` with each output once the producer's broker acknowledged it."""
        return self._hook("published", hook)

    def on_error(self, hook: F) -> F:
        """Call ``hook(msg, exc)`` when an input fails: a handler raised, bad input, refused output."""
        return self._hook("error", hook)

    def _check_not_running(self, what: str) -> None:
        if self._running:
            raise SetupError(f"cannot {what} while {self.name!r} is running; register before run()")

    # -- running ----------------------------------------------------------------------------

    def run(self) -> None:
        """Consume, process and produce until SIGINT/SIGTERM or ``stop()``; then shut down cleanly.

        Shutting down finishes the current batch, delivers outstanding outputs, commits and
        leaves the consumer group.
        """
        from kaf._loop import Loop, stop_on_signals

        if not self.processors:
            raise SetupError(f"{self.name!r} has no handlers; register one with @app.process")
        self._config("consumer")  # a config error is raised here, before anything connects
        self._config("producer")
        _configure_logging()
        self._running = True
        try:
            loop = Loop(self)
            with stop_on_signals(self.stop):
                loop.run()
        finally:
            self._running = False
            self.stop_requested.clear()

    def stop(self) -> None:
        """Ask a running app to stop, as SIGTERM does; safe from hooks and other threads."""
        self.stop_requested.set()

    def __repr__(self) -> str:
        return f"<KafkaApp {self.name!r} topics={list(self.processors)}>"


def _configure_logging() -> None:
    """Make ``app.logger.info`` visible with no set-up, as the original README's example expects."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kaf_logger = logging.getLogger("kaf")
    if kaf_logger.level == logging.NOTSET:
        kaf_logger.setLevel(logging.INFO)

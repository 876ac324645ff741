"""The public API, registration errors and the in-memory harness: no broker needed."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import kaf
from kaf import ConfigError, KafError, KafkaApp, Result, SetupError
from kaf.testing import TestRunner

CONSUMER = {"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}
PRODUCER = {"bootstrap.servers": "127.0.0.1:1"}


def make_app(**kwargs: Any) -> KafkaApp:
    return KafkaApp("t", consumer_config=CONSUMER, producer_config=PRODUCER, **kwargs)


def test_exported_members_are_sorted_and_public() -> None:
    assert kaf.__all__ == sorted(kaf.__all__)
    for name in kaf.__all__:
        assert hasattr(kaf, name)
    assert isinstance(kaf.__version__, str)


def test_error_tree() -> None:
    assert issubclass(kaf.DecodeError, KafError) and issubclass(kaf.DecodeError, ValueError)
    assert issubclass(kaf.DeliveryError, KafError)
    assert issubclass(ConfigError, KafError) and issubclass(ConfigError, ValueError)
    assert issubclass(SetupError, KafError) and issubclass(SetupError, ValueError)


def test_consumer_config_without_group_id_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"no group\.id: set consumer_config\['group\.id'\]"):
        KafkaApp("t", consumer_config={"bootstrap.servers": "x:9092"}, producer_config=PRODUCER)


def test_missing_bootstrap_servers_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"set consumer_config\['bootstrap\.servers'\]"):
        KafkaApp("t", consumer_config={"group.id": "g"})
    app = KafkaApp("t", consumer_config=CONSUMER, producer_config={})
    with pytest.raises(ConfigError, match=r"set producer_config\['bootstrap\.servers'\]"):
        app.producer_config  # noqa: B018


def test_configs_come_from_the_environment_when_left_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("KAF_CONSUMER_BOOTSTRAP_SERVERS", "in:9092")
    monkeypatch.setenv("KAF_CONSUMER_GROUP_ID", "g")
    monkeypatch.setenv("KAF_PRODUCER_BOOTSTRAP_SERVERS", "out:9092")
    app = KafkaApp("t")  # reads nothing yet
    assert app.consumer_config == {"bootstrap.servers": "in:9092", "group.id": "g"}
    assert app.producer_config == {"bootstrap.servers": "out:9092"}


def test_a_missing_environment_variable_names_itself(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("KAF_CONSUMER_BOOTSTRAP_SERVERS", "KAF_CONSUMER_GROUP_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAF_CONSUMER_BOOTSTRAP_SERVERS", "in:9092")
    app = KafkaApp("t")
    app.process(topic="in")(lambda v: None)
    with pytest.raises(ConfigError, match="KAF_CONSUMER_GROUP_ID"):
        app.run()


@pytest.mark.parametrize(
    ("option", "value"), [("accepts", "xml"), ("returns", None), ("returns", "avro")]
)
def test_unknown_format_is_a_setup_error(option: str, value: Any) -> None:
    app = make_app()
    with pytest.raises(SetupError, match=f"unknown {option}=.*use one of"):
        app.process(topic="in", publish_to="out", **{option: value})(lambda v: [])


def test_topic_registered_twice() -> None:
    app = make_app()
    app.process(topic="in", publish_to="out")(lambda v: [])
    with pytest.raises(SetupError, match="'in' already has a handler"):
        app.process(topic="in", publish_to="other")(lambda v: [])


def test_registering_while_running_is_refused() -> None:
    app = make_app()
    app._running = True  # what run() sets; the real loop is exercised in test_run.py
    with pytest.raises(SetupError, match="register before run"):
        app.process(topic="in")(lambda v: [])
    with pytest.raises(SetupError, match="register before run"):
        app.on_error(lambda m, e: None)


def test_run_without_handlers_is_a_setup_error() -> None:
    with pytest.raises(SetupError, match="no handlers"):
        make_app().run()


def test_bad_numbers_are_setup_errors() -> None:
    with pytest.raises(SetupError, match="consumer_batch_size"):
        make_app(consumer_batch_size=0)
    with pytest.raises(SetupError, match="commit_interval"):
        make_app(commit_interval=0)


def test_decorators_return_the_function_unchanged() -> None:
    app = make_app()

    def handler(value: Any) -> Any:
        yield value, None

    def hook(msg: Any) -> None:
        pass

    assert app.process(topic="in", publish_to="out")(handler) is handler
    assert app.on_consume(hook) is hook
    assert list(handler(1)) == [(1, None)]
    assert "in" in repr(app)


def test_logger_is_per_app() -> None:
    assert make_app().logger.name == "kaf.app.t"
    assert isinstance(make_app().logger, logging.Logger)


# -- the in-memory harness: same code path as the run loop ---------------------------------


def test_original_handler_in_memory() -> None:
    app = make_app()

    @app.process(topic="foo", publish_to="bar", accepts="json", returns="json")
    def add_one(input: Any) -> Any:
        number = input["number"]
        yield {"result": number + 1}, bytes(number)

    [out] = TestRunner(app).send("foo", {"number": 41})
    assert (out.topic, out.value, out.key) == ("bar", {"result": 42}, bytes(41))


@pytest.mark.parametrize(
    ("accepts", "sent", "seen"),
    [
        ("json", {"a": [1, "é"]}, {"a": [1, "é"]}),
        ("str", "héllo", "héllo"),
        ("bytes", b"\x00\xff", b"\x00\xff"),
        ("bytes", None, None),
    ],
)
def test_every_accepts_format(accepts: str, sent: Any, seen: Any) -> None:
    app = make_app()
    got = []
    app.process(topic="in", accepts=accepts)(lambda v: got.append(v))
    TestRunner(app).send("in", sent)
    assert got == [seen]


def test_accepts_none_passes_the_message() -> None:
    app = make_app()
    got = []
    app.process(topic="in", accepts=None)(
        lambda msg: got.append((msg.topic(), msg.key(), msg.value()))
    )
    TestRunner(app).send("in", b"raw", key="k")
    assert got == [("in", b"k", b"raw")]


@pytest.mark.parametrize(
    ("returns", "value", "wire"),
    [
        ("json", {"n": "é"}, '{"n":"é"}'.encode()),
        ("str", "tekst", b"tekst"),
        ("bytes", b"\x01", b"\x01"),
        ("bytes", None, None),
    ],
)
def test_every_returns_format(returns: str, value: Any, wire: Any) -> None:
    app = make_app()
    app.process(topic="in", publish_to="out", returns=returns)(lambda v: [(value, None)])
    [out] = TestRunner(app).send("in", {})
    assert out.message.value() == wire
    assert out.value == value


def test_keys_yield_forms_and_headers() -> None:
    app = make_app()

    @app.process(topic="in", publish_to="out")
    def many(v: Any) -> Any:
        yield 1, b"bytes-key"
        yield 2, "str-key"
        yield 3, None
        yield 4  # a bare value
        yield Result((5, 6), key="t", headers={"h": "v"})  # a tuple value needs Result

    outs = TestRunner(app).send("in", {})
    assert [(o.value, o.key) for o in outs] == [
        (1, b"bytes-key"), (2, b"str-key"), (3, None), (4, None), ([5, 6], b"t"),
    ]  # fmt: skip
    assert outs[-1].headers == [("h", b"v")]


def test_plain_function_returning_a_list_or_none() -> None:
    app = make_app()
    app.process(topic="a", publish_to="out")(lambda v: [(v, None), (v, None)])
    app.process(topic="b", publish_to="out")(lambda v: None)
    runner = TestRunner(app)
    assert len(runner.send("a", 1)) == 2
    assert runner.send("b", 1) == []
    assert len(runner.published) == 2


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (lambda v: [(1, 2)], "a key must be bytes, str or None, got int"),
        (lambda v: {"result": 1}, "returned a dict; yield"),
        (lambda v: [(object(), None)], "not JSON serializable"),
    ],
)
def test_bad_outputs_are_handler_errors(handler: Any, message: str) -> None:
    app = make_app()
    app.process(topic="in", publish_to="out")(handler)
    with pytest.raises(TypeError, match=message):
        TestRunner(app).send("in", {})


def test_sink_that_yields_is_an_error() -> None:
    app = make_app()
    app.process(topic="in")(lambda v: [(1, None)])
    with pytest.raises(TypeError, match="no publish_to"):
        TestRunner(app).send("in", {})


def test_hooks_run_in_order_and_a_failing_hook_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()
    events: list[tuple[str, Any]] = []
    app.process(topic="in", publish_to="out")(lambda v: [(v, None)])
    app.on_consume(lambda m: events.append(("consume", m.value())))
    app.on_consume(lambda m: 1 / 0)
    app.on_processed(lambda m, s: events.append(("processed", s >= 0)))
    app.on_published(lambda m: events.append(("published", m.value())))
    TestRunner(app).send("in", 7)
    assert events == [("consume", b"7"), ("processed", True), ("published", b"7")]
    assert "hook" in caplog.text and "ZeroDivisionError" in caplog.text


def test_failing_handler_logs_coordinates_and_dead_letters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(dead_letter_topic="dlq")
    errors = []
    app.on_error(lambda msg, exc: errors.append((msg.offset(), type(exc).__name__)))

    @app.process(topic="in", publish_to="out")
    def half(v: Any) -> Any:
        yield "first", None  # dropped: outputs are all-or-nothing per input
        raise RuntimeError("boom")

    runner = TestRunner(app, raise_errors=False)
    runner.send("in", 1)
    [dead] = runner.send("in", 2, key="k", headers={"trace": "x"})
    assert errors == [(0, "RuntimeError"), (1, "RuntimeError")]
    assert [o.topic for o in runner.published] == ["dlq", "dlq"]
    assert dead.key == b"k" and dead.message.value() == b"2"
    headers = dict(dead.headers)
    assert headers["kaf.error.type"] == b"RuntimeError"
    assert headers["kaf.error.message"] == b"boom"
    assert headers["kaf.source"] == b"in[0]@1"
    assert headers["trace"] == b"x"
    assert "in[0]@0" in caplog.text and "Traceback" in caplog.text


@pytest.mark.parametrize(
    ("accepts", "raw", "reason"),
    [
        ("json", b"{not json", "not valid JSON"),
        ("json", b"\xff\xfe", "not valid UTF-8"),
        ("json", None, "null value"),
        ("str", b"\xc3", "not valid UTF-8"),
        ("str", None, "null value"),
    ],
)
def test_undecodable_input_is_an_error_not_a_crash(accepts: str, raw: Any, reason: str) -> None:
    app = make_app()
    app.process(topic="in", accepts=accepts)(lambda v: None)
    runner = TestRunner(app, raise_errors=False)
    # bypass the harness' encoding: feed the raw bytes as a producer would have written them
    from confluent_kafka import Message

    runner.loop.handle(Message(topic="in", partition=0, offset=0, value=raw))
    [(_msg, exc)] = runner.errors
    assert reason in str(exc)


def test_unknown_topic_in_the_harness() -> None:
    with pytest.raises(SetupError, match="no handler for topic 'nope'"):
        TestRunner(make_app()).send("nope", 1)


def test_a_refused_output_is_traced_by_topic_value_and_key_each_output_once() -> None:
    """The delivery report of a refused output names no input: the batch finds it by content.
    (tests/test_run.py shows the same against the broker; this pins the order-dependent part.)"""
    from confluent_kafka import Message

    from kaf._checkpoint import Batch

    first, second, third = (Message(topic="in", partition=0, offset=i) for i in range(3))
    batch = Batch(None)  # type: ignore[arg-type]  # no deliveries here
    same = {"value": b"v", "key": b"k"}
    batch.record("good", [dict(same)], [first])
    batch.record("bad", [dict(same), dict(same)], [second, third])
    assert batch.source_of("bad", b"v", b"k") is second
    assert batch.source_of("bad", b"v", b"k") is third
    with pytest.raises(LookupError):
        batch.source_of("bad", b"v", b"k")

"""Unit tests: the handler as a plain function, and the app in Kaf's in-memory harness."""

from __future__ import annotations

from kaf.testing import TestRunner

from {{ cookiecutter.package_name }}.app import INPUT_TOPIC, OUTPUT_TOPIC, app
from {{ cookiecutter.package_name }}.handlers import add_one


def test_add_one_yields_the_successor_keyed_by_the_number() -> None:
    assert list(add_one({"number": 41})) == [({"result": 42}, bytes(41))]


def test_the_app_publishes_the_successor_to_the_output_topic() -> None:
    [output] = TestRunner(app).send(INPUT_TOPIC, {"number": 41})

    assert output.topic == OUTPUT_TOPIC
    assert output.value == {"result": 42}
    assert output.key == bytes(41)


def test_an_event_without_a_number_publishes_nothing_and_is_reported() -> None:
    # In production Kaf logs the handler's exception, calls on_error hooks and moves on.
    runner = TestRunner(app, raise_errors=False)

    assert runner.send(INPUT_TOPIC, {"value": 41}) == []
    [(_, error)] = runner.errors
    assert isinstance(error, KeyError)

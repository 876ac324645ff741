"""Wiring: which handler consumes which topic and publishes where. The logic is in handlers.

Kafka settings are not in the code: when the app runs, Kaf reads ``KAF_CONSUMER_*`` and
``KAF_PRODUCER_*`` from the environment and from ``.env`` in the working directory (see
``.env.example``). The topics default to the ones chosen when the project was generated;
``INPUT_TOPIC`` and ``OUTPUT_TOPIC``, from the same two places, override them.
"""

from __future__ import annotations

import os

from dotenv import dotenv_values
from kaf import KafkaApp

from {{ cookiecutter.package_name }} import handlers


def setting(name: str, default: str) -> str:
    """Return variable ``name`` as Kaf reads its own: environment first, then ./.env."""
    return os.environ.get(name) or dotenv_values(".env").get(name) or default


INPUT_TOPIC = setting("INPUT_TOPIC", "{{ cookiecutter.input_topic }}")
OUTPUT_TOPIC = setting("OUTPUT_TOPIC", "{{ cookiecutter.output_topic }}")

app = KafkaApp("{{ cookiecutter.project_slug }}")
app.add_processor(
    handlers.add_one,
    topic=INPUT_TOPIC,
    publish_to=OUTPUT_TOPIC,
    accepts="json",
    returns="json",
)


@app.on_processed
def log_processed(msg: object, seconds_elapsed: float) -> None:
    # The place for per-message metrics; DEBUG keeps production logs quiet.
    app.logger.debug("processed a message in %.3f s", seconds_elapsed)

"""Reject answers that would generate a broken service, before any file is written.

Cookiecutter renders this file with the answers, then runs it; a non-zero exit stops the
generation and removes the (still empty) project directory.
"""

from __future__ import annotations

import keyword
import re
import sys

# tojson gives a valid Python string literal whatever the answer contains.
ANSWERS = {
    "project_name": {{ cookiecutter.project_name | tojson }},
    "project_slug": {{ cookiecutter.project_slug | tojson }},
    "package_name": {{ cookiecutter.package_name | tojson }},
    "input_topic": {{ cookiecutter.input_topic | tojson }},
    "output_topic": {{ cookiecutter.output_topic | tojson }},
    "consumer_group": {{ cookiecutter.consumer_group | tojson }},
}

PROJECT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9 ._-]*")
PROJECT_SLUG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
PACKAGE_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Kafka's legal topic characters; Event Hubs names are a subset of these.
TOPIC = re.compile(r"[A-Za-z0-9._-]+")
MAX_TOPIC_LENGTH = 249
# Event Hubs limits group.id to 256 characters; no spaces or quotes keeps .env files simple.
CONSUMER_GROUP = re.compile(r"[A-Za-z0-9._-]{1,256}")
# Names the generated package must not shadow.
TAKEN_NAMES = {"kaf", "confluent_kafka", "dotenv", "tests", "test"} | set(
    getattr(sys, "stdlib_module_names", ())
)


def problems(answers: dict[str, str]) -> list[str]:
    """Return one message per invalid answer, naming the question and the rule."""
    found = []
    if not PROJECT_NAME.fullmatch(answers["project_name"]):
        found.append(
            f"project_name {answers['project_name']!r} must start with a letter and contain"
            " only letters, digits, spaces, '.', '_' and '-'"
        )
    if not PROJECT_SLUG.fullmatch(answers["project_slug"]):
        found.append(
            f"project_slug {answers['project_slug']!r} must be lower-case letters and digits"
            " in words joined by single '-', starting with a letter"
        )
    package = answers["package_name"]
    if not PACKAGE_NAME.fullmatch(package) or keyword.iskeyword(package):
        found.append(
            f"package_name {package!r} must be a Python identifier in lower case"
            " (letters, digits, '_'), starting with a letter"
        )
    elif package in TAKEN_NAMES:
        found.append(f"package_name {package!r} would shadow the module of that name")
    for question in ("input_topic", "output_topic"):
        topic = answers[question]
        if not TOPIC.fullmatch(topic) or topic in {".", ".."}:
            found.append(
                f"{question} {topic!r} may contain only ASCII letters, digits, '.', '_'"
                " and '-', and must not be '.' or '..'"
            )
        elif len(topic) > MAX_TOPIC_LENGTH:
            found.append(f"{question} is {len(topic)} characters long; Kafka allows 249")
    if answers["input_topic"] == answers["output_topic"]:
        found.append(
            "input_topic and output_topic are the same topic: the service would consume"
            " its own output forever"
        )
    if not CONSUMER_GROUP.fullmatch(answers["consumer_group"]):
        found.append(
            f"consumer_group {answers['consumer_group']!r} must be 1 to 256 ASCII letters,"
            " digits, '.', '_' or '-'"
        )
    return found


def main() -> int:
    found = problems(ANSWERS)
    for problem in found:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

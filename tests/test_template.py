"""The service template: what it generates, what it refuses, and that the result works.

Baking goes through pytest-cookies from the repository root, so the nested-template layout
(top-level cookiecutter.json -> template/) is what is tested, as `cookiecutter gh:...` sees it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer
from cookiecutter.exceptions import FailedHookException
from packaging.requirements import Requirement

import kaf
from kaf.testing import EmbeddedBroker
from tests.template_helpers import (
    REPO,
    RUNNING_PYTHON,
    TEMPLATE,
    Baked,
    active_settings,
    edited,
    env_without_kaf,
    make_venv,
    mentioned_settings,
    produce_json,
    read_records,
    stop,
    tool,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_ANSWERS = {
    "project_name": "Number Service",
    "project_slug": "number-service",
    "package_name": "number_service",
    "description": "Turns numbers into their successors, from Kafka to Kafka.",
    "author_name": "Your Name",
    "author_email": "you@example.com",
    "python_version": "3.12",
    "input_topic": "numbers",
    "output_topic": "results",
    "consumer_group": "number-service",
    "eventhubs": False,
}
GENERATED_FILES = [
    ".cookiecutter.json",
    ".dockerignore",
    ".env.example",
    ".github/workflows/ci.yml",
    ".github/workflows/release.yml",
    ".gitignore",
    ".pre-commit-config.yaml",
    ".python-version",
    "Dockerfile",
    "README.md",
    "docker-compose.yml",
    "pyproject.toml",
    "src/{package}/__init__.py",
    "src/{package}/__main__.py",
    "src/{package}/app.py",
    "src/{package}/handlers.py",
    "tests/conftest.py",
    "tests/test_handlers.py",
    "tests/test_service.py",
]
KAFKA_SETTINGS = {"KAF_CONSUMER_BOOTSTRAP_SERVERS", "KAF_PRODUCER_BOOTSTRAP_SERVERS"}
EVENTHUBS_SETTINGS = {
    "KAF_CONSUMER_EVENTHUBS_CONNECTION_STRING",
    "KAF_PRODUCER_EVENTHUBS_CONNECTION_STRING",
}
COMMON_SETTINGS = {"KAF_CONSUMER_GROUP_ID", "KAF_CONSUMER_AUTO_OFFSET_RESET"}
OPTIONAL_SETTINGS = {"INPUT_TOPIC", "OUTPUT_TOPIC", "KAF_CONSUMER_SESSION_TIMEOUT_MS"}
JINJA_LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|\{#")
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
OUR_WORKFLOWS = REPO / ".github" / "workflows"


def _bake(cookies: Any, **options: Any) -> Baked:
    result = cookies.bake(template=str(REPO), extra_context=options)
    return Baked(result.exit_code, result.exception, result.project_path)


@pytest.fixture
def bake(cookies: Any) -> Callable[..., Baked]:
    """``bake(**answers)`` generates a project into this test's temporary directory."""
    return lambda **options: _bake(cookies, **options)


@pytest.fixture(scope="session")
def default_project(cookies_session: Any) -> Baked:
    return _bake(cookies_session)


@pytest.fixture(scope="session")
def eventhubs_project(cookies_session: Any) -> Baked:
    return _bake(cookies_session, project_name="Hub Bridge", eventhubs=True)


@pytest.fixture(params=["default_project", "eventhubs_project"])
def project(request: pytest.FixtureRequest) -> Baked:
    """Each variant of the template in turn."""
    baked: Baked = request.getfixturevalue(request.param)
    return baked


# -- generation -----------------------------------------------------------------------------


def test_the_defaults_generate_the_whole_service(default_project: Baked) -> None:
    assert default_project.exit_code == 0, default_project.exception
    assert default_project.path is not None
    assert default_project.path.name == "number-service"
    assert default_project.files() == sorted(
        f.format(package="number_service") for f in GENERATED_FILES
    )
    assert default_project.answers == DEFAULT_ANSWERS


def test_the_cookiecutter_command_finds_the_template_at_the_repository_root(
    tmp_path: Path,
) -> None:
    config = tmp_path / "cookiecutter.yaml"
    config.write_text(
        yaml.safe_dump(
            {"cookiecutters_dir": str(tmp_path / "cc"), "replay_dir": str(tmp_path / "replay")}
        )
    )
    result = subprocess.run(
        [tool("cookiecutter"), "--no-input", "--config-file", config, "--output-dir",
         tmp_path / "out", REPO, "project_name=Cli Check"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "cli-check" / "src" / "cli_check" / "app.py").is_file()


def test_nothing_is_left_unrendered(project: Baked) -> None:
    assert project.path is not None
    for relative in project.files():
        assert not JINJA_LEFTOVER.search(relative), relative
        text = project.read(relative)
        if relative.startswith(".github/workflows/"):
            # Copied without rendering, so GitHub's own ${{ }} expressions arrive intact.
            template = TEMPLATE / "{{cookiecutter.project_slug}}" / relative
            assert text == template.read_text(), relative
            assert "${{ github." in text, relative
        else:
            assert not JINJA_LEFTOVER.search(text), f"{relative}: {JINJA_LEFTOVER.search(text)}"


def test_the_answers_reach_every_file_that_uses_them(bake: Callable[..., Baked]) -> None:
    baked = bake(
        project_name="Fraud Scorer",
        description='Scores "payments" \\ fast',
        author_name="Zoë O'Brien",
        python_version="3.13",
        input_topic="payments.v1",
        output_topic="scores_v1",
        consumer_group="fraud-scorer.prod",
    )

    assert baked.exit_code == 0, baked.exception
    app = baked.read("src/fraud_scorer/app.py")
    assert 'INPUT_TOPIC = setting("INPUT_TOPIC", "payments.v1")' in app
    assert 'OUTPUT_TOPIC = setting("OUTPUT_TOPIC", "scores_v1")' in app
    assert (
        active_settings(baked.read(".env.example"))["KAF_CONSUMER_GROUP_ID"] == "fraud-scorer.prod"
    )
    compose = yaml.safe_load(baked.read("docker-compose.yml"))
    assert (
        compose["services"]["service"]["environment"]["KAF_CONSUMER_GROUP_ID"]
        == "fraud-scorer.prod"
    )
    assert "payments.v1 scores_v1" in compose["services"]["topics"]["command"][0]
    assert "ARG PYTHON_VERSION=3.13" in baked.read("Dockerfile")
    assert 'CMD ["python", "-m", "fraud_scorer"]' in baked.read("Dockerfile")
    assert baked.read(".python-version") == "3.13\n"
    pyproject = tomllib.loads(baked.read("pyproject.toml"))
    assert pyproject["project"]["name"] == "fraud-scorer"
    assert pyproject["project"]["description"] == 'Scores "payments" \\ fast'
    assert pyproject["project"]["authors"] == [{"name": "Zoë O'Brien", "email": "you@example.com"}]
    assert pyproject["project"]["requires-python"] == ">=3.13"
    assert pyproject["tool"]["ruff"]["target-version"] == "py313"
    ruff = baked.run(tool("ruff"), "check", "--no-cache", ".")
    assert ruff.returncode == 0, ruff.stdout


def test_env_example_activates_kafka_or_event_hubs_and_documents_both(
    default_project: Baked, eventhubs_project: Baked
) -> None:
    kafka_env = default_project.read(".env.example")
    eventhubs_env = eventhubs_project.read(".env.example")

    assert set(active_settings(kafka_env)) == COMMON_SETTINGS | KAFKA_SETTINGS
    assert set(active_settings(eventhubs_env)) == COMMON_SETTINGS | EVENTHUBS_SETTINGS
    documented = COMMON_SETTINGS | KAFKA_SETTINGS | EVENTHUBS_SETTINGS | OPTIONAL_SETTINGS
    assert documented <= mentioned_settings(kafka_env)
    assert documented <= mentioned_settings(eventhubs_env)
    consumer, producer = (
        active_settings(eventhubs_env)[name] for name in sorted(EVENTHUBS_SETTINGS)
    )
    assert "<consumer-namespace>" in consumer and "<producer-namespace>" in producer
    assert "This service talks to Event Hubs" in eventhubs_project.read("README.md")
    assert "This service talks to Event Hubs" not in default_project.read("README.md")


def test_kaf_understands_the_settings_of_env_example(project: Baked, tmp_path: Path) -> None:
    """`kaf config` on the app, with .env.example's placeholders filled in as a user would."""
    secret = "c2VjcmV0LWtleS1mb3ItdGVzdHM="
    filled = edited(
        project.read(".env.example"),
        {
            "<consumer-namespace>": "consumer-ns",
            "<producer-namespace>": "producer-ns",
            "<policy>": "service",
            "<key>": secret,
        },
    )
    (tmp_path / ".env").write_text(filled)
    assert project.path is not None
    result = subprocess.run(
        [sys.executable, "-m", "kaf.cli", "config", f"{project.package}.app:app"],
        cwd=tmp_path, env={**env_without_kaf(), "PYTHONPATH": str(project.path / "src")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    consumer, producer = json.loads(result.stdout).values()
    assert consumer["group.id"] == project.answers["consumer_group"]
    assert consumer["auto.offset.reset"] == "earliest"
    if project.answers["eventhubs"]:
        assert consumer["bootstrap.servers"] == "consumer-ns.servicebus.windows.net:9093"
        assert producer["bootstrap.servers"] == "producer-ns.servicebus.windows.net:9093"
        assert consumer["security.protocol"] == producer["security.protocol"] == "SASL_SSL"
        assert secret not in result.stdout
    else:
        assert consumer["bootstrap.servers"] == producer["bootstrap.servers"] == "localhost:9092"


def test_the_generated_service_accepts_this_kaf_runtime(default_project: Baked) -> None:
    pyproject = tomllib.loads(default_project.read("pyproject.toml"))
    requirements = [Requirement(r) for r in pyproject["project"]["dependencies"]]
    [kaf_runtime] = [r for r in requirements if r.name == "kaf-runtime"]

    assert kaf_runtime.specifier.contains(kaf.__version__), (
        f"the template requires {kaf_runtime}, this repository is kaf-runtime {kaf.__version__}"
    )


# -- invalid answers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "error"),
    [
        ({"project_name": "1st Service"}, "ERROR: project_name"),
        ({"project_name": 'Say "hi"'}, "ERROR: project_name"),
        ({"package_name": "class"}, "ERROR: package_name"),
        ({"package_name": "my-service"}, "ERROR: package_name"),
        ({"package_name": "kaf"}, "ERROR: package_name 'kaf' would shadow"),
        ({"input_topic": "two words"}, "ERROR: input_topic"),
        ({"input_topic": ".."}, "ERROR: input_topic"),
        ({"output_topic": "t" * 250}, "ERROR: output_topic is 250 characters long"),
        ({"output_topic": "numbers"}, "ERROR: input_topic and output_topic are the same"),
        ({"consumer_group": "my group"}, "ERROR: consumer_group"),
    ],
    ids=[
        "name-starts-with-digit",
        "name-with-quotes",
        "package-is-keyword",
        "package-with-dash",
        "package-shadows-kaf",
        "topic-with-space",
        "topic-dot-dot",
        "topic-too-long",
        "same-topics",
        "group-with-space",
    ],
)
def test_invalid_answers_stop_generation_before_anything_is_written(
    bake: Callable[..., Baked],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    answers: dict[str, str],
    error: str,
) -> None:
    baked = bake(**answers)

    assert baked.exit_code != 0
    assert isinstance(baked.exception, FailedHookException)
    assert error in capfd.readouterr().err
    assert baked.path is None
    # pytest-cookies bakes into tmp_path/cookies/bakeNN: those stay empty.
    assert [p for p in (tmp_path / "cookies").rglob("*") if not p.name.startswith("bake")] == []


def test_valid_edge_answers_are_accepted(bake: Callable[..., Baked]) -> None:
    baked = bake(input_topic="a" * 249, output_topic="Results_v2.x-y", consumer_group="g" * 256)

    assert baked.exit_code == 0, baked.exception


# -- the generated project's tooling ---------------------------------------------------------


def test_the_generated_project_passes_ruff(project: Baked) -> None:
    check = project.run(tool("ruff"), "check", "--no-cache", ".")
    assert check.returncode == 0, check.stdout
    formatted = project.run(tool("ruff"), "format", "--check", "--no-cache", ".")
    assert formatted.returncode == 0, formatted.stdout


@pytest.mark.parametrize(
    "python_version", json.loads((TEMPLATE / "cookiecutter.json").read_text())["python_version"]
)
def test_every_python_version_choice_passes_ruff(
    bake: Callable[..., Baked], python_version: str
) -> None:
    # ruff's target-version follows the answer, and with it the rules that apply.
    baked = bake(python_version=python_version)
    check = baked.run(tool("ruff"), "check", "--no-cache", ".")

    assert check.returncode == 0, check.stdout
    assert f'target-version = "py{python_version.replace(".", "")}"' in baked.read("pyproject.toml")


def test_the_dockerfile_passes_hadolint(project: Baked) -> None:
    result = project.run(tool("hadolint"), "Dockerfile")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_the_dockerfile_runs_the_service_as_a_non_root_user(default_project: Baked) -> None:
    dockerfile = default_project.read("Dockerfile")
    final_stage = dockerfile.split("\nFROM ")[-1]

    assert final_stage.startswith("python:${PYTHON_VERSION}-slim\n")
    assert "USER 10001" in final_stage
    assert final_stage.rstrip().endswith('CMD ["python", "-m", "number_service"]')
    # No configuration in the image: it comes from the environment at run time.
    assert not re.search(r"^(ENV|ARG) .*KAF_", dockerfile, flags=re.MULTILINE)
    assert not re.search(r"^(COPY|ADD) \. ", dockerfile, flags=re.MULTILINE)
    rules = [r for r in default_project.read(".dockerignore").splitlines() if r and r[0] != "#"]
    assert rules[0] == "*" and "!.env" not in rules, "the build context is an allow-list"
    assert ".env" in default_project.read(".gitignore").splitlines()


def test_docker_compose_matches_the_compose_specification(default_project: Baked) -> None:
    result = default_project.run(
        tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load(default_project.read("docker-compose.yml"))
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft


def test_pre_commit_accepts_the_generated_config(project: Baked) -> None:
    result = project.run(tool("pre-commit"), "validate-config", ".pre-commit-config.yaml")

    assert result.returncode == 0, result.stdout + result.stderr
    hooks = {
        hook["id"]
        for repo in yaml.safe_load(project.read(".pre-commit-config.yaml"))["repos"]
        for hook in repo["hooks"]
    }
    assert {"ruff-check", "ruff-format", "end-of-file-fixer", "trailing-whitespace"} <= hooks


# -- workflows: the generated ones and this repository's ------------------------------------


@pytest.fixture(params=["generated", "kaf"])
def workflows(request: pytest.FixtureRequest, default_project: Baked) -> Path:
    """A .github/workflows directory: the generated service's, then this repository's."""
    if request.param == "kaf":
        return OUR_WORKFLOWS
    assert default_project.path is not None
    return default_project.path / ".github" / "workflows"


def test_workflows_have_no_zizmor_finding(workflows: Path) -> None:
    result = subprocess.run(
        [tool("zizmor"), "--offline", "--persona", "pedantic", "--no-progress", workflows],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


def test_workflows_match_the_github_schema(workflows: Path) -> None:
    files = sorted(workflows.glob("*.yml"))
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert [f.name for f in files] == ["ci.yml", "release.yml"]
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_are_least_privilege_and_pinned(workflows: Path) -> None:
    for path in sorted(workflows.glob("*.yml")):
        text = path.read_text()
        workflow = yaml.safe_load(text)
        assert workflow["permissions"] == {}, path.name
        for name, job in workflow["jobs"].items():
            permissions = job.get("permissions", {})
            if permissions.get("id-token") == "write":
                assert name == "pypi" and job["environment"]["name"] == "pypi", (path.name, name)
            for step in job.get("steps", []):
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, (path.name, name)
        for line in re.findall(r"uses: (.*)", text):
            assert PINNED_ACTION.match(line), f"{path.name}: {line} is not pinned to a commit"
    release = yaml.safe_load((workflows / "release.yml").read_text())
    assert release[True] == {"release": {"types": ["published"]}}  # YAML reads `on` as True
    assert release["jobs"]["pypi"]["permissions"] == {"id-token": "write"}


# -- the generated project, installed and running ----------------------------------------------


@pytest.fixture(scope="session")
def installed_project(
    cookies_session: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Baked, Path]:
    """A project baked for this interpreter, installed (wheel, no download) into its own venv."""
    baked = _bake(cookies_session, project_name="Installed Service", python_version=RUNNING_PYTHON)
    assert baked.path is not None, baked.exception
    python = make_venv(tmp_path_factory.mktemp("service-venv") / "venv")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", baked.path],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    return baked, python


@pytest.mark.slow
def test_the_generated_project_passes_its_own_tests(installed_project: tuple[Baked, Path]) -> None:
    baked, python = installed_project
    result = baked.run(
        python, "-m", "pytest", "-p", "no:cacheprovider", env=env_without_kaf(), timeout=110
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b4 passed\b", result.stdout), result.stdout


@pytest.fixture
def env_file(installed_project: tuple[Baked, Path]) -> Iterator[Callable[[str], Path]]:
    """Write the generated project's .env (removed afterwards: the project is shared)."""
    baked, _ = installed_project
    assert baked.path is not None
    path = baked.path / ".env"

    def write(text: str) -> Path:
        path.write_text(text)
        return path

    yield write
    path.unlink(missing_ok=True)


ENTRY_POINTS = {
    # How the README starts the service: python -m with the default topics, and `kaf run`
    # (its console script is `python -m kaf.cli`) with the topics changed in .env.
    "python-m": (["-m", "{package}"], "numbers", "results"),
    "kaf-run": (["-m", "kaf.cli", "run", "{package}.app:app"], "orders", "receipts"),
}


@pytest.mark.slow
@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_the_service_consumes_on_one_broker_and_publishes_on_another_configured_by_env_file(
    installed_project: tuple[Baked, Path],
    env_file: Callable[[str], Path],
    tmp_path: Path,
    entry_point: str,
) -> None:
    baked, python = installed_project
    arguments, input_topic, output_topic = ENTRY_POINTS[entry_point]
    with EmbeddedBroker() as consumer_side, EmbeddedBroker() as producer_side:
        # The .env a developer writes: .env.example with the two addresses filled in.
        env_file(
            edited(
                baked.read(".env.example"),
                {
                    "KAF_CONSUMER_BOOTSTRAP_SERVERS=localhost:9092": (
                        f"KAF_CONSUMER_BOOTSTRAP_SERVERS={consumer_side.bootstrap_servers}"
                    ),
                    "KAF_PRODUCER_BOOTSTRAP_SERVERS=localhost:9092": (
                        f"KAF_PRODUCER_BOOTSTRAP_SERVERS={producer_side.bootstrap_servers}"
                    ),
                    "# INPUT_TOPIC=numbers": f"INPUT_TOPIC={input_topic}",
                    "# OUTPUT_TOPIC=results": f"OUTPUT_TOPIC={output_topic}",
                    "# KAF_CONSUMER_SESSION_TIMEOUT_MS=": "KAF_CONSUMER_SESSION_TIMEOUT_MS=",
                },
            )
        )
        produce_json(consumer_side.bootstrap_servers, input_topic, [{"number": 41}, {"number": 7}])

        log_path = tmp_path / "service.log"
        command = [python, *(a.format(package=baked.package) for a in arguments)]
        with log_path.open("wb") as log:
            service = subprocess.Popen(
                command, cwd=baked.path, env=env_without_kaf(), stdout=log, stderr=subprocess.STDOUT
            )
        try:
            records = read_records(producer_side.bootstrap_servers, output_topic, 2, service, 60)
        finally:
            exit_code = stop(service)
            print(log_path.read_text(errors="replace"))  # pytest shows it if the test fails

        assert sorted(records) == [(bytes(7), {"result": 8}), (bytes(41), {"result": 42})]
        assert exit_code == 0
        assert output_topic not in topics_of(consumer_side.bootstrap_servers)


def topics_of(bootstrap_servers: str) -> set[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "template-tests"})
    try:
        return set(consumer.list_topics(timeout=10).topics)
    finally:
        consumer.close()

"""The ``kaf`` command: run an app, show its configuration, start a development broker.

    kaf run orders.service:app --env-file prod.env
    kaf config orders.service:app
    kaf broker --port 9092

A Kaf error (``ConfigError``, ``SetupError``) or a bad ``module:attr`` prints one line,
``kaf: error: <message>``, on stderr and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from types import FrameType
from typing import Any

from kaf import __version__
from kaf.app import KafkaApp
from kaf.config import redact, scrub
from kaf.errors import KafError, SetupError

__all__ = ["main"]

EXIT_USAGE = 2


class _Failure(Exception):
    """A problem the user fixes on the command line; printed as one line, exit status 2."""


def _version() -> str:
    try:
        client = f" (confluent-kafka {version('confluent-kafka')})"
    except PackageNotFoundError:  # pragma: no cover - it is a dependency of kaf-runtime
        client = ""
    return f"kaf {__version__}{client}"


def _load_env_file(path: str | None) -> None:
    """Load ``path`` into ``os.environ``; variables already set keep their values."""
    if path is None:
        return
    if not os.path.isfile(path):
        raise _Failure(f"--env-file {path}: no such file")
    from dotenv import load_dotenv

    load_dotenv(path, override=False)


def load_app(target: str) -> Any:
    """Import ``module:attr`` (``attr`` defaults to ``app``, may be dotted) from the cwd."""
    module_name, _, attrs = target.partition(":")
    attrs = attrs or "app"
    if not module_name or not all(attrs.split(".")):
        raise _Failure(f"{target!r} is not module:attr, e.g. 'myservice:app'")
    cwd = os.getcwd()
    if cwd not in sys.path:  # like uvicorn: the app's module is looked up from where you are
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing target module is the user's typo; a missing import inside it is a bug
        # in their code and keeps its traceback.
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise
        raise _Failure(f"cannot import {module_name!r}: {exc}") from None
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise _Failure(f"module {module_name!r} has no attribute {attrs!r}") from None
    if not callable(getattr(obj, "run", None)):
        raise _Failure(f"{module_name}:{attrs} is a {type(obj).__name__}, not a KafkaApp")
    return obj


def _run(args: argparse.Namespace) -> int:
    _load_env_file(args.env_file)
    load_app(args.app).run()
    return 0


def _config(args: argparse.Namespace) -> int:
    _load_env_file(args.env_file)
    # Without an app, an app with no configs: it resolves and checks them from the environment.
    app = KafkaApp("kaf") if args.app is None else load_app(args.app)
    effective = {"consumer": redact(app.consumer_config), "producer": redact(app.producer_config)}
    print(json.dumps(effective, indent=2, sort_keys=True, default=repr))
    return 0


def _broker(args: argparse.Namespace) -> int:
    from kaf.testing import EmbeddedBroker

    # Tansu exits at once on a busy port; say which port and what to do instead. SO_REUSEADDR
    # as Tansu's own listener: a port whose old connections linger in TIME_WAIT is free.
    try:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((args.host, args.port))
    except OSError as exc:
        raise SetupError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror}); "
            "choose another port with --port"
        ) from None
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    broker = EmbeddedBroker(args.port or None, host=args.host)
    try:
        broker.start()
        print(f"kaf broker: listening on {broker.bootstrap_servers} (in memory; Ctrl-C stops it)")
        print(f"  KAF_CONSUMER_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
        print(f"  KAF_PRODUCER_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
        # The embedded broker answers JoinGroup after about session.timeout.ms / 2.
        print(
            "  KAF_CONSUMER_SESSION_TIMEOUT_MS=6000  # joins the group in ~3 s instead of ~22 s",
            flush=True,
        )
        while not stop.wait(0.5):
            process = broker.process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                print(f"kaf: error: the broker exited with code {code}", file=sys.stderr)
                return 1
    finally:
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("kaf broker: stopped", flush=True)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaf",
        description="Run Kaf apps, show their configuration, start a development broker.",
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    env_file = argparse.ArgumentParser(add_help=False)
    env_file.add_argument(
        "--env-file",
        metavar="PATH",
        help="load variables from this file first (variables already set win)",
    )

    run = commands.add_parser(
        "run",
        parents=[env_file],
        help="run an app until SIGINT/SIGTERM",
        description="Import module:attr (attr defaults to 'app') from the current directory "
        "and call its run().",
    )
    run.add_argument("app", metavar="MODULE[:ATTR]", help="e.g. myservice:app or myservice")
    run.set_defaults(handler=_run)

    config = commands.add_parser(
        "config",
        parents=[env_file],
        help="print the effective configuration as JSON, secrets redacted",
        description="Print {'consumer': {...}, 'producer': {...}}: the app's configuration, "
        "or without MODULE[:ATTR] the one KAF_CONSUMER_* / KAF_PRODUCER_* variables and .env "
        "give. Secrets are shown as '***'. Exits 2 if the configuration is invalid.",
    )
    config.add_argument("app", nargs="?", metavar="MODULE[:ATTR]", help="e.g. myservice:app")
    config.set_defaults(handler=_config)

    broker = commands.add_parser(
        "broker",
        help="start a local Kafka-compatible broker for development",
        description="Start the embedded Tansu broker (needs kaf-runtime[dev]); data is kept in "
        "memory and lost when it stops. Ctrl-C or SIGTERM stops it.",
    )
    broker.add_argument("--port", type=int, default=9092, help="default: %(default)s")
    broker.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    broker.set_defaults(handler=_broker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``kaf`` command with ``argv`` (default: ``sys.argv[1:]``); return the status."""
    args = _parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except (KafError, _Failure) as exc:
        message = " ".join(scrub(str(exc)).split())  # one line, and never an Event Hubs key
        print(f"kaf: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    return status


if __name__ == "__main__":  # pragma: no cover - the console script calls main() itself
    sys.exit(main())

"""Run the service.

    python -m {{ cookiecutter.package_name }}
    kaf run {{ cookiecutter.package_name }}.app:app     # the same, through Kaf's command

SIGTERM or Ctrl-C stops it gracefully: the current batch is finished, outputs are delivered,
offsets committed, and the process exits 0.
"""

from __future__ import annotations

from {{ cookiecutter.package_name }}.app import app


def main() -> None:
    app.run()


if __name__ == "__main__":
    main()

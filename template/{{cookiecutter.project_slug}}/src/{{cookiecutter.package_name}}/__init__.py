"""{{ cookiecutter.project_name }}: a Kaf consume -> transform -> produce service."""

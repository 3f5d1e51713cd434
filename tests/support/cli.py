"""The ``distress`` command line run in-process, as an operator would run it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from cli.main import app
from config import Settings


class Distress:
    """``distress ...`` in-process, configured through the environment like a real invocation."""

    def __init__(self, settings: Settings, data_dir: Path, **env: str) -> None:
        self.env = {
            "DISTRESS_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
            "DISTRESS_TOPIC_PREFIX": settings.topic_prefix,
            "DISTRESS_DATA_DIR": str(data_dir),
            "DISTRESS_LOG_LEVEL": "WARNING",
            "COLUMNS": "200",
            **env,
        }
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0) -> Result:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            result = self.runner.invoke(app, list(args), env=self.env)
        finally:  # the command points logging at the runner's stderr, which closes afterwards
            root.handlers[:], root.level = handlers, level
        assert result.exit_code == code, f"{args}: {result.output}{result.stderr if code == 0 else ''}"
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code).stdout)


def features(*args: str) -> Result:
    """`distress features ARGS` in-process, through the entry point that reports failures."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return CliRunner().invoke(app, ["features", *args])
    finally:  # the command configures logging for its own run
        root.handlers[:], root.level = handlers, level

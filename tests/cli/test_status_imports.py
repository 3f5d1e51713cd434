"""`distress status` loads neither Ray nor FastAPI: it is a quick look at Kafka that scripts may run often."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

# Resolves `status` the way the `distress` command does (cli.main's lazy table) and runs it up to its argument
# check, then lists the heavy packages that came with it.
PROBE = """
import sys
from typer.testing import CliRunner
from cli.main import app
result = CliRunner().invoke(app, ["status", "--window", "-1"])
assert result.exit_code == 2, result.output
print(sorted(name for name in ("ray", "fastapi", "torch") if name in sys.modules))
"""


def test_distress_status_imports_neither_ray_nor_fastapi() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert loaded.stdout.strip().splitlines()[-1] == "[]", loaded.stderr


def test_the_probe_sees_a_command_that_imports_ray() -> None:
    """The same check on `distress run`'s module finds Ray, so an empty list above means something."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, cli.run; print('ray' in sys.modules)"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert loaded.stdout.strip() == "True", loaded.stderr

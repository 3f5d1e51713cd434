"""`make setup` (inside `make run` and `make test`) is the only set-up step: it installs the missing Debian packages
itself, or stops first with one line naming the exact command when it may not."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "tools" / "system-deps.sh"


def run_script(package_list: str, listing: str = "", *, as_user: str | None = None) -> subprocess.CompletedProcess[str]:
    """The script on ``package_list`` (``/dev/stdin`` reads ``listing``)."""
    command = ["bash", str(SCRIPT), package_list]
    if as_user is not None:  # setpriv drops root for this one process, as a user without sudo runs it
        command = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups", *command]
    return subprocess.run(command, input=listing, capture_output=True, text=True, timeout=120)


def listing(*packages: str) -> str:
    return "# a comment line is skipped\n" + "\n".join(packages) + "\n"


def test_nothing_missing_is_quiet_and_succeeds() -> None:
    done = run_script("/dev/stdin", listing("bash", "coreutils"))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_an_unreadable_package_list_is_an_error(tmp_path: Path) -> None:
    done = run_script(str(tmp_path / "absent.txt"))
    assert (done.returncode, done.stderr) == (1, f"error: cannot read the package list {tmp_path / 'absent.txt'}\n")


def test_without_root_or_sudo_it_stops_with_the_exact_command() -> None:
    with tempfile.TemporaryDirectory() as folder:  # in /tmp, which the unprivileged user can read, unlike tmp_path
        readable = Path(folder) / "packages.txt"
        readable.write_text(listing("bash", "distress-no-such-package"))
        Path(folder).chmod(0o755)
        done = run_script(str(readable), as_user="65534")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "error: missing Debian packages distress-no-such-package; install them with: sudo apt-get update && "
        "sudo apt-get install -y --no-install-recommends distress-no-such-package"
    ]


def test_every_package_the_product_lists_is_installed_by_setup() -> None:
    """What `make setup` ran before this suite left nothing of tools/debian-packages.txt missing."""
    done = run_script(str(REPO_ROOT / "tools" / "debian-packages.txt"))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_make_setup_installs_the_system_packages_before_anything_else() -> None:
    # --no-print-directory: under `make test` this make is a sub-make, which would announce its directory first
    planned = subprocess.run(
        ["make", "--no-print-directory", "-n", "setup"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert planned.stdout.splitlines()[0] == "bash tools/system-deps.sh tools/debian-packages.txt"


def test_without_uv_setup_installs_it_into_a_private_venv(tmp_path: Path) -> None:
    """A Debian system python3.11 refuses `pip install uv` (externally-managed-environment): setup gives uv a venv
    of its own under .local/ and runs it from there."""
    system_python = Path("/usr/bin/python3.11")
    if (
        not system_python.exists()
        or subprocess.run([system_python, "-m", "uv", "--version"], capture_output=True).returncode == 0
    ):
        pytest.skip("needs a python3.11 without uv, as Debian installs it")
    (tmp_path / "python3.11").symlink_to(system_python)
    planned = subprocess.run(
        ["make", "--no-print-directory", "-n", "-W", "pyproject.toml", ".venv/.installed"],
        cwd=REPO_ROOT,
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line.strip() for line in planned.stdout.splitlines()]
    assert (
        "{ python3.11 -m venv --clear .local/uv && .local/uv/bin/pip install -q --disable-pip-version-check uv; }"
        in lines
    )
    assert ".local/uv/bin/uv venv --allow-existing --python python3.11 .venv" in lines
    assert ".local/uv/bin/uv pip install --python .venv/bin/python -e '.[dev]'" in lines
    assert not any("python3.11 -m pip" in line for line in lines)

"""A throwaway PostgreSQL cluster of its own, for tests that stop, crash and restart the database under a running
component (tests/faults/test_database_down.py, tests/frontend/test_health.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import free_port, wait_for
from tests.faults.conftest import skip_or_fail


class PrivateCluster:
    """A throwaway PostgreSQL cluster on a free port, run by the ``postgres`` user (the server refuses root)."""

    def __init__(self) -> None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parts[-3]))
        if not versions:
            skip_or_fail("PostgreSQL server binaries are not installed (/usr/lib/postgresql/*/bin)")
        if os.geteuid() != 0:
            skip_or_fail("stopping and starting a private PostgreSQL cluster needs root (to run as postgres)")
        self.bin = versions[-1].parent
        self.port = free_port()
        self.data = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        shutil.chown(self.data, "postgres", "postgres")
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "distress", "--no-sync", "-E", "UTF8"
        )
        self.url = f"postgresql+psycopg://distress@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "log"), "-o", options, "-w", "start"
        )

    def crash(self) -> None:
        """An immediate shutdown (SIGQUIT to the postmaster): no checkpoint, open transactions are cut."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGQUIT)
        wait_for(lambda: not (self.data / "postmaster.pid").exists(), what="PostgreSQL to go down")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True)

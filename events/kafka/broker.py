"""The embedded single-node KRaft Kafka broker+controller on 127.0.0.1: format once, start detached, wait until
usable, stop gracefully.

The broker runs from the Maven Central jars that ``make setup`` installs under ``kafka_home``; its data lives under
the data directory so it survives ``down``/``up``. When ``DISTRESS_KAFKA_BOOTSTRAP`` names another cluster, nothing
is started and ``status`` reports on that cluster instead.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from events.kafka.admin import reachable
from events.kafka.connection import BusError, KafkaConnection

MIN_JAVA = 17
# How long a command waits for Kafka to answer before it says it cannot reach it: a broker that is up answers in
# milliseconds (seconds on a machine starved of CPU), and librdkafka's own retries would keep an operator waiting
# 30 s for the same answer.
PROBE_TIMEOUT_S = 5.0


class BrokerError(BusError):
    """The broker could not be installed, started, reached or stopped; the message says what to do."""


@dataclass(frozen=True, kw_only=True)
class BrokerStatus:
    managed: bool
    running: bool
    reachable: bool
    bootstrap_servers: str
    pid: int | None
    data_dir: str | None
    log_file: str | None


class BrokerSettings(Protocol):
    """What the broker's lifecycle reads of the settings (``config.Settings`` has it all): described here, so the
    transport does not depend on the configuration layer, which builds on it."""

    @property
    def kafka_home(self) -> Path: ...
    @property
    def kafka_port(self) -> int: ...
    @property
    def kafka_controller_port(self) -> int: ...
    @property
    def kafka_heap(self) -> str: ...
    @property
    def kafka_bootstrap(self) -> str | None: ...
    @property
    def uses_local_broker(self) -> bool: ...
    @property
    def bootstrap_servers(self) -> str: ...
    @property
    def broker_dir(self) -> Path: ...
    def kafka_connection(self) -> KafkaConnection: ...


SettingsT = TypeVar("SettingsT", bound=BrokerSettings)


class LocalBroker(Generic[SettingsT]):
    """Lifecycle of the embedded broker: format once, start detached, wait until usable, stop gracefully."""

    def __init__(self, settings: SettingsT) -> None:
        self.settings = settings
        self.home = settings.kafka_home
        self.root = settings.broker_dir
        self.log_dir = self.root / "logs"
        self.pid_file = self.root / "broker.pid"
        self.log_file = self.root / "broker.log"
        self.properties_file = self.root / "server.properties"
        self.log4j_file = self.root / "log4j2.properties"
        # The broker this object started, kept so that `down` reaps it: a Popen dropped while its process runs
        # warns (ResourceWarning), and an unreaped child stays a zombie until this process exits.
        self._started: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------------------------------ queries

    def status(self) -> BrokerStatus:
        if not self.settings.uses_local_broker:
            return BrokerStatus(
                managed=False,
                running=True,
                reachable=self.reachable(),
                bootstrap_servers=self.settings.bootstrap_servers,
                pid=None,
                data_dir=None,
                log_file=None,
            )
        pid = self._live_pid()
        return BrokerStatus(
            managed=True,
            running=pid is not None,
            reachable=pid is not None and self.reachable(),
            bootstrap_servers=self.settings.bootstrap_servers,
            pid=pid,
            data_dir=str(self.log_dir.resolve()),
            log_file=str(self.log_file.resolve()),
        )

    def reachable(self, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
        """True when the cluster answers a metadata request (not just an open port)."""
        return reachable(self.settings.kafka_connection(), timeout_s)

    # ------------------------------------------------------------------------------------------ lifecycle

    def up(self, timeout_s: float = 90.0) -> BrokerStatus:
        """Start the broker unless it is already up; returns once it serves metadata requests."""
        if not self.settings.uses_local_broker:
            raise BrokerError(
                f"DISTRESS_KAFKA_BOOTSTRAP={self.settings.kafka_bootstrap} names an external cluster; "
                "no local broker is started"
            )
        if self._live_pid() is not None:
            self._wait_until_reachable(timeout_s)
            return self.status()
        java = require_java()
        classpath = self._classpath()
        self._refuse_busy_ports()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._write_config()
        except OSError as error:  # stays an OSError (a full disk, a permission), with the directory it concerns
            if error.filename is None:
                error.filename = str(self.root)
            raise
        if not (self.log_dir / "meta.properties").exists():
            self._format(java, classpath)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                [
                    java,
                    f"-Xmx{self.settings.kafka_heap}",
                    f"-Xms{self.settings.kafka_heap}",
                    f"-Dlog4j2.configurationFile={self.log4j_file.resolve()}",
                    f"-Dkafka.logs.dir={self.root.resolve()}",
                    "-cp",
                    classpath,
                    "kafka.Kafka",
                    str(self.properties_file.resolve()),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        self._started = process
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"Kafka exited with code {process.returncode}; {self._log_hint()}")
            if self._port_open(self.settings.kafka_port) and self.reachable(timeout_s=2.0):
                return self.status()
            time.sleep(0.5)
        raise BrokerError(f"Kafka did not become reachable within {timeout_s:.0f} s; {self._log_hint()}")

    def down(self, timeout_s: float = 60.0) -> bool:
        """Stop the broker gracefully (SIGTERM, then SIGKILL after the timeout). False if it was not running."""
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        if self._started is not None and self._started.pid == pid:
            self._started.wait()
            self._started = None
        self.pid_file.unlink(missing_ok=True)
        return True

    # ------------------------------------------------------------------------------------------ internals

    def _classpath(self) -> str:
        libs = self.home / "libs"
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"Kafka jars not found in {libs}; run `make setup` to install them")
        return f"{libs.resolve()}/*"

    def _format(self, java: str, classpath: str) -> None:
        cluster_id = _run([java, "-cp", classpath, "kafka.tools.StorageTool", "random-uuid"]).strip().splitlines()[-1]
        _run(
            [
                java,
                "-cp",
                classpath,
                f"-Dlog4j2.configurationFile={self.log4j_file.resolve()}",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self.properties_file.resolve()),
            ]
        )

    def _write_config(self) -> None:
        port, controller_port = self.settings.kafka_port, self.settings.kafka_controller_port
        self.properties_file.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.log_dir.resolve()}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "message.max.bytes=4194304",
                    "",
                ]
            )
        )
        self.log4j_file.write_text(
            "\n".join(
                [
                    "appender.stdout.type=Console",
                    "appender.stdout.name=STDOUT",
                    "appender.stdout.layout.type=PatternLayout",
                    "appender.stdout.layout.pattern=[%d] %p %m (%c)%n",
                    "rootLogger.level=INFO",
                    "rootLogger.appenderRef.stdout.ref=STDOUT",
                    "logger.kafka.name=kafka",
                    "logger.kafka.level=WARN",
                    "logger.apache.name=org.apache.kafka",
                    "logger.apache.level=WARN",
                    "",
                ]
            )
        )

    def _live_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) and _is_kafka(pid) else None

    def _refuse_busy_ports(self) -> None:
        for port in (self.settings.kafka_port, self.settings.kafka_controller_port):
            if self._port_open(port):
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is already in use by another process; stop it or set "
                    "DISTRESS_KAFKA_PORT / DISTRESS_KAFKA_CONTROLLER_PORT"
                )

    def _wait_until_reachable(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.reachable(timeout_s=2.0):
            if time.monotonic() > deadline:
                raise BrokerError(f"broker process is running but not reachable; {self._log_hint()}")
            time.sleep(0.5)

    @staticmethod
    def _port_open(port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            return probe.connect_ex(("127.0.0.1", port)) == 0

    def _log_hint(self) -> str:
        """Where the broker's log is and its last error line: one line, for the one-line error message."""
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return f"no log at {self.log_file}"
        errors = [line.strip() for line in lines if " ERROR " in line or "Exception" in line]
        return f"see {self.log_file.resolve()}" + (f" (last error: {errors[-1][:300]})" if errors else "")


def require_java() -> str:
    """Path of a Java >= 17 runtime, or a BrokerError that says what to install."""
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            f"Java {MIN_JAVA}+ is required to run Kafka: install it (Debian: apt-get install openjdk-17-jre-headless)"
        )
    banner = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', banner)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise BrokerError(f"Kafka needs Java {MIN_JAVA}+, found {banner.splitlines()[0] if banner else 'unknown'}")
    return java


def _run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()
        raise BrokerError(f"{' '.join(command[-4:])} failed ({result.returncode}): {output[-1] if output else ''}")
    return result.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) counts as dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _is_kafka(pid: int) -> bool:
    """Guards against a stale pid file whose pid now belongs to an unrelated process."""
    try:
        return b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True

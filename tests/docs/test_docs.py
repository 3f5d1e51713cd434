"""Doc-tests: the commands README.md and docs/*.md show are run, so the documentation cannot rot.

The convention (docs/README.md explains it to writers):

- Every fenced block declares its language. Commands are ```` ```sh ```` blocks.
- A ``sh`` block whose previous non-blank line is ``<!-- doctest -->`` is run by bash (``set -eo pipefail``) and
  must exit 0. Options go inside the comment: ``expect="text"`` (repeatable: the output must contain it),
  ``timeout=SECONDS``, ``needs=demo`` (first make what ``make run`` leaves behind: the demo recording in
  ``.local/state/demo/`` and its events on Kafka, projected) and ``delivers=N`` (the block must deliver N
  notifications to ``$ALERT_URL``, a local Apprise ``json://`` sink).
- A ``sh`` block without the marker must be in ``NOT_RUN`` below, with the reason it cannot run here, so a new
  command cannot slip in unmarked.
- Every ``toml`` and ``yaml`` block must be a valid settings file (fragments are: every setting has a default).
- Every relative link must name a file that exists, and its ``#anchor`` a heading of that file.

The marked blocks run in order, README.md first, in one scratch copy of the repository root (symlinks, with a
private ``.local/state``), as by a reader who follows the documents: against the session's Kafka broker under a
topic prefix of their own, a SQLite database in that directory, ``.venv/bin`` first on PATH. Nothing a block
writes reaches the real checkout; each block's whole output is kept in the scratch ``.local/doctest/``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from config import Settings, load_settings
from events.kafka.broker import LocalBroker
from tests.conftest import REPO_ROOT

DOCUMENTS = (REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")))
SHELL_LANGUAGES = frozenset({"sh", "bash", "shell", "console", "shell-session"})
CONFIG_LANGUAGES = frozenset({"toml", "yaml", "yml"})
DEFAULT_TIMEOUT_S = 120.0
DEMO_RECORDING = Path(".local/state/demo/demo.wav")
DEMO_STREAM = "demo"

# Unmarked shell blocks: (document, first command without its comment) -> why the doc-tests do not run it.
NOT_RUN: dict[tuple[str, str], str] = {
    ("README.md", "make run"): "set-up, a real-time demo and the whole suite (this test among it)",
    (
        "README.md",
        "distress run --source rtsp://user:pass@10.0.0.5:554/audio --source mic",
    ): "needs a live RTSP source and a microphone; runs until Ctrl-C",
    ("README.md", "distress dashboard"): "serves until Ctrl-C (tests/frontend covers it)",
    (
        "README.md",
        "export ALERT_URL='slack://TokenA/TokenB/TokenC/#alerts'",
    ): "needs real Slack or mail credentials; here ALERT_URL points at a local sink instead",
    ("README.md", "bash tools/prepare_ssh.sh"): "starts sshd and a Ray cluster (tests/test_ray_cluster.py does this)",
    ("docs/benchmarks.md", "distress bench features --json"): "benchmarks take minutes each and load the machine",
    ("docs/model-history.md", "make training-deps"): "root packages, a dataset build and training: tens of minutes",
    (
        "docs/benchmarks-codec.md",
        "export DISTRESS_TEST_POSTGRES_URL=postgresql+psycopg://distress:distress@127.0.0.1:5432/distress_test",
    ): "compares two git worktrees of a past commit over several benchmark rounds: minutes, and PostgreSQL",
    ("docs/operations.md", "distress dashboard hash-password --name alice"): "asks for the password on the terminal",
    ("docs/operations.md", "curl -s http://127.0.0.1:9464/metrics | head"): "needs `distress run` running",
}


# ------------------------------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class Marker:
    """What a ``<!-- doctest ... -->`` comment asks of the block after it."""

    expect: tuple[str, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    needs_demo: bool = False
    delivers: int | None = None


@dataclass(frozen=True)
class Block:
    """One fenced block of a document."""

    document: str  # relative to the repository root
    line: int  # the opening fence's line, 1-based
    language: str
    text: str
    marker: Marker | None
    marker_error: str | None = None

    @property
    def first_command(self) -> str:
        """The block's first line without a trailing comment: what identifies it in ``NOT_RUN``."""
        line = next((line for line in self.text.splitlines() if line.strip()), "")
        return line.split(" #")[0].strip()

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"


MARKER = re.compile(r"^\s*<!--\s*doctest\b(?P<options>.*?)-->\s*$")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def parse_marker(options: str) -> Marker:
    """The marker's options; anything unknown is an error, so a typo cannot turn a check off."""
    expect: list[str] = []
    timeout_s, needs_demo, delivers = DEFAULT_TIMEOUT_S, False, None
    for token in shlex.split(options.strip().removeprefix(":")):
        key, equals, value = token.partition("=")
        if not equals or not value:
            raise ValueError(f"doctest option {token!r}: expected key=value")
        if key == "expect":
            expect.append(value)
        elif key == "timeout":
            timeout_s = float(value)
        elif key == "needs" and value == "demo":
            needs_demo = True
        elif key == "delivers":
            delivers = int(value)
        else:
            raise ValueError(f"unknown doctest option {token!r} (expect=, timeout=, needs=demo, delivers=)")
    return Marker(expect=tuple(expect), timeout_s=timeout_s, needs_demo=needs_demo, delivers=delivers)


def parse_blocks(markdown: str, document: str) -> list[Block]:
    """Every fenced block of a Markdown text, with the doctest marker that precedes it, if any."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    previous = ""  # the last non-blank line outside a block
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            if lines[index].strip():
                previous = lines[index]
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not re.match(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[end]):
            body.append(lines[end][indent:] if lines[end][:indent].isspace() else lines[end])
            end += 1
        marker, error = None, None
        found = MARKER.match(previous)
        if found:
            try:
                marker = parse_marker(found["options"])
            except ValueError as problem:
                error = str(problem)
        blocks.append(
            Block(
                document=document,
                line=index + 1,
                language=opening["info"].strip().split(" ")[0],
                text="\n".join(body) + "\n",
                marker=marker,
                marker_error=error,
            )
        )
        previous = ""
        index = end + 1
    return blocks


ALL_BLOCKS = [
    block
    for path in DOCUMENTS
    for block in parse_blocks(path.read_text(encoding="utf-8"), path.relative_to(REPO_ROOT).as_posix())
]
RUN_BLOCKS = [block for block in ALL_BLOCKS if block.marker is not None]


# ------------------------------------------------------------------------------------------------ running


class AlertSink:
    """A local HTTP endpoint for Apprise ``json://`` notifications: where ``$ALERT_URL`` points in doc-tests."""

    def __init__(self) -> None:
        self.received: list[dict[str, object]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="doctest-alert-sink", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/alerts"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Outcome:
    returncode: int
    output: str
    delivered: int = 0  # notifications the local sink received while the block ran


@dataclass
class Walkthrough:
    """Every marked block, README first, run in order in one scratch directory, as by a reader who follows the
    documents: the tour's later steps build on earlier ones, and the demo state is made once."""

    workspace: Path
    env: dict[str, str]
    settings: Settings
    sink: AlertSink
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    demo_ready: bool = False

    def outcome(self, block: Block) -> Outcome:
        """Run ``block`` after every marked block before it (each once)."""
        for earlier in RUN_BLOCKS:
            if earlier.where not in self.outcomes:
                self.outcomes[earlier.where] = self._run(earlier)
            if earlier.where == block.where:
                return self.outcomes[block.where]
            if self.outcomes[earlier.where].returncode != 0:
                return Outcome(-1, f"an earlier block failed: {earlier.where}")
        raise AssertionError(f"{block.where} is not a marked block")

    def _run(self, block: Block) -> Outcome:
        assert block.marker is not None
        if block.marker.needs_demo and not self.demo_ready:
            make_demo_state(self.workspace, self.settings)
            self.demo_ready = True
        before = len(self.sink.received)
        try:
            done = subprocess.run(
                ["bash", "-c", f"set -eo pipefail\n{block.text}"],
                cwd=self.workspace,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=block.marker.timeout_s,
            )
        except subprocess.TimeoutExpired as expired:
            return Outcome(-2, f"timed out after {block.marker.timeout_s:.0f} s: {expired.stdout!r} {expired.stderr!r}")
        output = done.stdout + done.stderr
        log = self.workspace / ".local" / "doctest" / f"{block.where.replace('/', '_')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {block.text}\n{output}", encoding="utf-8")  # the whole output, for a failure's reader
        return Outcome(done.returncode, output, len(self.sink.received) - before)


def scratch_checkout(root: Path) -> Path:
    """The repository root as symlinks, with a private ``.local`` (state) that still uses the installed Kafka."""
    private = {
        ".local",
        ".git",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        "distress.toml",
        "distress.yaml",
        "distress.yml",
    }
    for entry in REPO_ROOT.iterdir():
        if entry.name not in private:
            (root / entry.name).symlink_to(entry)
    (root / ".local").mkdir()
    (root / ".local" / "kafka").symlink_to(REPO_ROOT / ".local" / "kafka")
    return root


def make_demo_state(workspace: Path, settings: Settings) -> None:
    """What ``make run`` leaves behind, made by the same stages without Ray (whose start takes minutes here):
    the demo recording, its stream, audio chunks, scores and incident on Kafka, and the read models projected."""
    from actors.capture.actor import CaptureActor
    from actors.capture.normalise import TARGET_SAMPLE_RATE
    from actors.capture.sources import open_source
    from actors.offline import OfflinePipeline
    from actors.scorer import ScorerStage, scorer_from_settings
    from events import Event
    from projections.database import open_database
    from projections.projector import Projector
    from projections.read_models import PROJECTIONS

    recording = workspace / DEMO_RECORDING
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "make_demo_audio.py"), str(recording)],
        check=True,
        capture_output=True,
    )
    settings.ensure_topics()
    loaded = scorer_from_settings(settings)
    scorer = ScorerStage(loaded.catalogue, loaded.classifier, loaded.fusion_config, log_mel=loaded.log_mel)
    pipeline = OfflinePipeline(settings, scorer)

    with settings.bus().producer() as producer:

        class Both:
            """Capture publishes to Kafka, as live, and into the in-process stages."""

            def publish(self, event: Event) -> None:
                producer.publish(event)
                pipeline.publish(event)

            def flush(self, timeout_s: float = 60.0) -> None:
                producer.flush(timeout_s)

        report = CaptureActor(
            stream_id=DEMO_STREAM,
            source=open_source(str(recording)),
            publisher=Both(),
            chunk_samples=settings.capture.chunk_samples(TARGET_SAMPLE_RATE),
            resample_quality=settings.capture.resample_quality,
        ).run()
        assert not report.failed, report.reason
        for event in pipeline.events:
            producer.publish(event)
    engine = open_database(settings)
    try:
        for projection in PROJECTIONS.values():
            projector = Projector(engine, settings.bus(), projection)
            projector.catch_up()
            projector.close()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def alert_sink() -> Iterator[AlertSink]:
    sink = AlertSink()
    yield sink
    sink.close()


@pytest.fixture(scope="module")
def walkthrough(
    kafka_broker: LocalBroker[Settings], alert_sink: AlertSink, tmp_path_factory: pytest.TempPathFactory
) -> Walkthrough:
    workspace = scratch_checkout(tmp_path_factory.mktemp("docs"))
    prefix = f"docs{uuid.uuid4().hex[:8]}."
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("DISTRESS_") and name not in {"RAY_ADDRESS", "VIRTUAL_ENV"}
    }
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "DISTRESS_KAFKA_BOOTSTRAP": kafka_broker.settings.bootstrap_servers,
            "DISTRESS_TOPIC_PREFIX": prefix,
            "DISTRESS_RUNTIME__METRICS_PORT": "0",  # never the default port another run may hold
            "DISTRESS_DASHBOARD__PORT": "0",
            "ALERT_URL": alert_sink.url,
            "COLUMNS": "160",
        }
    )
    settings = load_settings(
        kafka_bootstrap=kafka_broker.settings.bootstrap_servers,
        topic_prefix=prefix,
        data_dir=workspace / ".local" / "state",
    )
    return Walkthrough(workspace, env, settings, alert_sink)


# ------------------------------------------------------------------------------------------------ tests


def test_documents_are_found() -> None:
    """The glob and the parser see the documents and their blocks (an empty list would pass everything below)."""
    documents = {block.document for block in ALL_BLOCKS}
    assert {
        "README.md",
        "docs/architecture.md",
        "docs/operations.md",
        "docs/benchmarks.md",
        "docs/model-history.md",
    } <= documents
    assert len(RUN_BLOCKS) >= 8


def test_every_fenced_block_declares_its_language() -> None:
    """A bare fence could hide a command from the checks below."""
    assert [block.where for block in ALL_BLOCKS if not block.language] == []


def test_every_marker_parses_and_marks_an_sh_block() -> None:
    problems = [f"{block.where}: {block.marker_error}" for block in ALL_BLOCKS if block.marker_error]
    problems += [
        f"{block.where}: marker before a {block.language!r} block" for block in RUN_BLOCKS if block.language != "sh"
    ]
    assert problems == []


def test_no_marker_is_left_without_its_block() -> None:
    """A marker followed by prose instead of a block would silently stop a block from running."""
    for path in DOCUMENTS:
        markdown = path.read_text(encoding="utf-8")
        document = path.relative_to(REPO_ROOT).as_posix()
        in_block, markers = False, 0
        for line in markdown.splitlines():
            if FENCE.match(line):
                in_block = not in_block
            elif not in_block and MARKER.match(line):
                markers += 1
        attached = [block for block in parse_blocks(markdown, document) if block.marker or block.marker_error]
        assert markers == len(attached), f"{document}: {markers} markers, {len(attached)} on a block"


def test_every_marked_block_is_valid_bash() -> None:
    for block in RUN_BLOCKS:
        checked = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True)
        assert checked.returncode == 0, f"{block.where}: {checked.stderr}"


def test_unmarked_shell_blocks_are_exactly_the_allow_list() -> None:
    """Every command block is run, or listed in NOT_RUN with a reason; a stale entry fails too."""
    unmarked = {
        (block.document, block.first_command)
        for block in ALL_BLOCKS
        if block.language in SHELL_LANGUAGES and block.marker is None and not block.marker_error
    }
    assert unmarked - NOT_RUN.keys() == set(), "shell blocks neither marked <!-- doctest --> nor in NOT_RUN"
    assert NOT_RUN.keys() - unmarked == set(), "NOT_RUN entries whose block is gone or now marked"


def test_parser_reads_markers_options_and_fences() -> None:
    """The parser itself: a marker applies to the next block only, options are checked, indented fences work."""
    blocks = parse_blocks(
        '<!-- doctest expect="a b" timeout=5 -->\n```sh\necho a b\n```\n\n```sh\nnot marked\n```\n'
        "<!-- doctest: needs=demo delivers=1 -->\n\n  ```sh\n  echo indented\n  ```\n"
        "<!-- doctest bogus=1 -->\n```sh\necho x\n```\n",
        "sample.md",
    )
    assert [(block.line, block.marker) for block in blocks[:3]] == [
        (2, Marker(expect=("a b",), timeout_s=5.0)),
        (6, None),
        (11, Marker(needs_demo=True, delivers=1)),
    ]
    assert blocks[2].text == "echo indented\n"
    assert blocks[3].marker is None and "bogus=1" in (blocks[3].marker_error or "")


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a document's headings: lower case, punctuation dropped, spaces to hyphens."""
    anchors: set[str] = set()
    in_block = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            in_block = not in_block
        elif not in_block and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_relative_links_and_anchors_resolve() -> None:
    """Moving text between documents is how links break: every relative link must name a file and heading."""
    broken = []
    for path in DOCUMENTS:
        markdown = path.read_text(encoding="utf-8")
        for match in LINK.finditer(markdown):
            target = match["target"]
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto: not checked here
            file_part, _, fragment = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                broken.append(f"{path.name}: {target} (no such file)")
            elif fragment and linked.suffix == ".md" and fragment not in heading_anchors(linked.read_text("utf-8")):
                broken.append(f"{path.name}: {target} (no such heading)")
    assert broken == []


@pytest.mark.parametrize(
    "block", [pytest.param(block, id=block.where) for block in ALL_BLOCKS if block.language in CONFIG_LANGUAGES]
)
def test_config_block_is_a_valid_settings_file(block: Block) -> None:
    """A configuration example the settings object rejects would stop the product at start."""
    document = tomllib.loads(block.text) if block.language == "toml" else yaml.safe_load(block.text)
    assert isinstance(document, dict), f"{block.where}: not a mapping"
    Settings(**document)


@pytest.mark.parametrize("block", [pytest.param(block, id=block.where) for block in RUN_BLOCKS])
def test_documented_commands_run(block: Block, walkthrough: Walkthrough) -> None:
    assert block.marker is not None
    outcome = walkthrough.outcome(block)
    tail = outcome.output[-4000:]
    assert outcome.returncode == 0, f"{block.where} exited {outcome.returncode}:\n{block.text}\n{tail}"
    for expected in block.marker.expect:
        assert expected in outcome.output, f"{block.where}: {expected!r} not in the output:\n{tail}"
    if block.marker.delivers is not None:
        assert outcome.delivered == block.marker.delivers, f"{block.where}: {outcome.delivered} delivered\n{tail}"


def test_heading_anchors_follow_github() -> None:
    """The link check is only as good as its slugs; headings inside fenced blocks are not headings."""
    markdown = "# 1.5.0: animal calls\n## Comparing recipes: `distress models compare`\n```sh\n# a comment\n```\n"
    assert heading_anchors(markdown) == {"150-animal-calls", "comparing-recipes-distress-models-compare"}

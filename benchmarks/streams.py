"""How many concurrent real-time 16 kHz streams this machine sustains through the full Kafka + Ray pipeline.

Every trial is a pipeline of its own: fresh topics (a unique prefix, deleted afterwards), a fresh SQLite read
model, and the stage actors (features, scorer, incidents, alerting, projections, metrics, and ASR on the second
path) started exactly as `distress run` starts them, then stopped and killed before the next trial. Alerts go to a
local Apprise ``json://`` sink in this process. N streams play in real time at once, their starts spread over one
second; each plays the same excerpt of the demo recording (ordinary talk in a room, then a scream and a shouted
"Help! Call the police!"). Capture runs as N ``CaptureActor`` threads in this process sharing one producer (what
`distress capture` does for N sources), so that N does not also mean N Python processes on the same cores.

A trial passes when the pipeline caught up after the audio ended, every stream opened its incident, and the p95
latency from a chunk's capture (its hand-over to Kafka) to the IncidentOpened it caused is under 1 s. The search
doubles N (halves it after a first failure) and then bisects the gap between the largest pass and the smallest
failure. Each trial also reports: p50/p95 latency per stage since capture (see ``actors.metrics``), the p95 from
the distress onset in the audio to AlertDispatched (published once Apprise handed the alert to the sink), the
largest backlog of every stage (also in seconds of its input), the CPU seconds each stage's processes used, and
the load average before and after (other jobs on the machine change every number here).

The limiting stage is judged at the smallest failing trial (else the largest trial): the stage furthest behind its
input, with its CPU seconds alongside as evidence.

Run with ``distress bench streams [--json] [--max-streams N] [--quick]``; the broker must be up
(`distress broker up`, or ``kafka_bootstrap`` pointing at a cluster).

A trial (``benchmarks.streams_trial``) and what it measures (``benchmarks.streams_measures``) are modules of their
own; this one searches N and reports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import ray

from actors.demo import ensure_demo_recording, local_alert_sink, with_sink_route
from actors.runtime.driver import connect_ray
from benchmarks.streams_trial import (
    LATENCY_LIMIT_S,
    TAIL_S,
    BenchmarkError,
    Trial,
    excerpt,
    run_trial,
)
from config import Settings, load_settings
from events.kafka.admin import reachable

MAX_STREAMS = 256
FIRST_STREAMS = {"acoustic": 8, "with_asr": 1}
LEAD_S = 16.0  # audio before the distress onset: long enough for a backlog to show in the latency
QUICK_LEAD_S = 8.0
REFINEMENTS = 2  # bisection steps after the doubling search (none with --quick)
BROKER_TIMEOUT_S = 5.0
STEADY_INPUT_PER_STREAM_S = 0.8  # fed per chunk: ~0.95 or more (1 s chunks); fed per incident: 0.2-0.6


# ------------------------------------------------------------------------------------------------ settings


def require_broker(settings: Settings) -> None:
    if not reachable(settings.kafka_connection(), BROKER_TIMEOUT_S, log_level=0):  # quiet: the error says it all
        hint = "start it with `distress broker up`" if settings.uses_local_broker else "check kafka_bootstrap"
        raise BenchmarkError(f"Kafka is not reachable at {settings.bootstrap_servers}: {hint}")


# ---------------------------------------------------------------------------------------------- the search


def search(trial: Callable[[int], Trial], *, first: int, max_streams: int, refinements: int) -> list[Trial]:
    """Double N from ``first`` while trials pass (halve it while they fail), then bisect the gap between the
    largest pass and the smallest failure ``refinements`` times."""
    trials: list[Trial] = []

    def run(streams: int) -> bool:
        trials.append(trial(streams))
        report(trials[-1])
        return trials[-1].passed

    streams = min(first, max_streams)
    if run(streams):
        while streams < max_streams and run(min(streams * 2, max_streams)):
            streams = min(streams * 2, max_streams)
    else:
        while streams > 1 and not run(streams // 2):
            streams //= 2
    for _ in range(refinements):
        passing = [t.streams for t in trials if t.passed]
        failing = [t.streams for t in trials if not t.passed]
        low, high = max(passing, default=0), min(failing, default=max_streams + 1)
        if high - low <= 1 or high > max_streams:
            break
        run((low + high) // 2)
    return trials


def limiting_stage(trials: list[Trial]) -> dict[str, Any] | None:
    """At the smallest failing trial (else the largest one): of the stages fed per chunk, the one furthest behind
    its input. Stages fed per incident are left out: every stream here screams within the same second, so their
    backlog is a burst by design (their cost shows in the alert latency)."""
    if not trials:
        return None
    failing = [trial for trial in trials if not trial.passed]
    judged = min(failing, key=lambda t: t.streams) if failing else max(trials, key=lambda t: t.streams)
    steady = [name for name, rate in judged.input_per_stream_s.items() if rate >= STEADY_INPUT_PER_STREAM_S]
    stage = max(steady, key=lambda name: (judged.seconds_behind[name], judged.cpu_s.get(name, 0.0)))
    return {
        "stage": stage,
        "at_streams": judged.streams,
        "seconds_behind": judged.seconds_behind[stage],
        "max_backlog": judged.max_backlog[stage],
        "cpu_s": judged.cpu_s.get(stage),
        "why": (
            f"furthest behind its input at {judged.streams} streams ({judged.seconds_behind[stage]} s of input "
            f"queued; {judged.verdict})"
            if failing
            else f"no trial failed: only a hint, the stage with the most input queued at {judged.streams} streams "
            f"({judged.seconds_behind[stage]} s)"
        ),
    }


def report(trial: Trial) -> None:
    """Progress on stderr while the search runs (stdout carries only the result)."""
    print(
        f"[{trial.path} N={trial.streams}] {'pass' if trial.passed else 'FAIL'}: {trial.verdict}; onset->alert "
        f"p95 {trial.onset_to_alert_p95_s} s; load {trial.load_average_start[0]:.1f}->"
        f"{trial.load_average_end[0]:.1f}",
        file=sys.stderr,
        flush=True,
    )


# ------------------------------------------------------------------------------------------------ the run


def path_result(trials: list[Trial], max_streams: int) -> dict[str, Any]:
    passing = [trial for trial in trials if trial.passed]
    best = max(passing, key=lambda trial: trial.streams) if passing else None
    return {
        "max_streams": best.streams if best else 0,
        "limit_not_reached": best is not None and best.streams == max_streams,  # the machine may sustain more
        "capture_to_incident_p95_s_at_max": best.capture_to_incident_p95_s if best else None,
        "onset_to_alert_p95_s_at_max": best.onset_to_alert_p95_s if best else None,
        "limiting_stage": limiting_stage(trials),
        "trials": [asdict(trial) for trial in trials],
    }


def run(*, max_streams: int | None = None, quick: bool = False) -> dict[str, Any]:
    """Both paths (acoustic only, then with ASR), N up to ``max_streams`` (default ``MAX_STREAMS``); every
    number, the trials included."""
    max_streams = MAX_STREAMS if max_streams is None else max_streams
    if max_streams < 1:
        raise BenchmarkError(f"--max-streams must be at least 1, got {max_streams}")
    settings = load_settings()
    require_broker(settings)
    recording = ensure_demo_recording(settings)
    load_start = os.getloadavg()
    started_ray = connect_ray(settings.runtime, None)
    alerts_received = 0

    def count(_: dict[str, Any]) -> None:
        nonlocal alerts_received
        alerts_received += 1

    paths: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="distress-bench-") as folder, local_alert_sink(count) as sink:
            routed = with_sink_route(settings, sink)
            audio = excerpt(recording, Path(folder), lead_s=QUICK_LEAD_S if quick else LEAD_S)
            for path, first in FIRST_STREAMS.items():
                trial = partial(run_trial, routed, audio, path=path, folder=Path(folder))
                trials = search(trial, first=first, max_streams=max_streams, refinements=0 if quick else REFINEMENTS)
                paths[path] = path_result(trials, max_streams)
    finally:
        if started_ray:
            ray.shutdown()
    return {
        "max_streams_acoustic": paths["acoustic"]["max_streams"],
        "max_streams_with_asr": paths["with_asr"]["max_streams"],
        "onset_to_alert_p95_s": paths["acoustic"]["onset_to_alert_p95_s_at_max"],
        "limiting_stage_acoustic": paths["acoustic"]["limiting_stage"],
        "limiting_stage_with_asr": paths["with_asr"]["limiting_stage"],
        "criterion": f"caught up, every stream's incident opened, p95 capture->incident < {LATENCY_LIMIT_S} s",
        "audio": {"seconds": audio.onset_s + TAIL_S, "onset_s": audio.onset_s, "sample_rate": 16_000},
        "quick": quick,
        "max_streams_tried": max_streams,
        "alerts_received_by_sink": alerts_received,
        "cpus": os.cpu_count(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "acoustic": paths["acoustic"],
        "with_asr": paths["with_asr"],
    }


def render(result: dict[str, Any]) -> str:
    """The result for people: the answers first, then one line per trial."""

    def stage(limit: dict[str, Any] | None) -> str:
        return f"{limit['stage']} ({limit['why']})" if limit else "n/a"

    def streams(path: str) -> str:
        found = result[path]
        return f"{found['max_streams']}{' (the most tried: the limit is higher)' if found['limit_not_reached'] else ''}"

    lines = [
        f"max real-time streams ({result['criterion']}): acoustic {streams('acoustic')}, "
        f"with ASR {streams('with_asr')}",
        f"p95 onset->alert at that load (acoustic): {result['onset_to_alert_p95_s']} s",
        f"limiting stage: acoustic {stage(result['limiting_stage_acoustic'])}",
        f"                with ASR {stage(result['limiting_stage_with_asr'])}",
        f"{result['cpus']} CPUs; load average {result['load_average_start'][0]:.1f} at start, "
        f"{result['load_average_end'][0]:.1f} at end",
    ]
    for path in ("acoustic", "with_asr"):
        for trial in result[path]["trials"]:
            cores = sum(v for k, v in trial["cpu_s"].items() if k != "machine") / max(trial["wall_s"], 1e-9)
            lines.append(
                f"  {path:8} N={trial['streams']:<4} {'pass' if trial['passed'] else 'FAIL'}  {trial['verdict']}; "
                f"onset->alert p95 {trial['onset_to_alert_p95_s']} s; behind {trial['seconds_behind']}; "
                f"pipeline {cores:.2f} cores, machine {trial['cpu_s']['machine'] / max(trial['wall_s'], 1e-9):.2f}; "
                f"load {trial['load_average_start'][0]:.1f}->{trial['load_average_end'][0]:.1f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--max-streams", type=int, default=None, help=f"largest N to try (default {MAX_STREAMS})")
    parser.add_argument("--quick", action="store_true", help="shorter audio and no bisection")
    arguments = parser.parse_args(argv)
    try:
        result = run(max_streams=arguments.max_streams, quick=arguments.quick)
    except BenchmarkError as error:
        raise SystemExit(f"error: {error}") from error
    print(json.dumps(result, indent=2) if arguments.json else render(result))


if __name__ == "__main__":
    main()

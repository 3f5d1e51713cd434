"""The streams benchmark's trial on the test broker and a real local Ray: two demo streams in real time through the
registered pipeline; the result must be complete JSON, find both incidents, and leave no topic behind."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from actors.demo import DEMO_SCRIPT, local_alert_sink, with_sink_route
from benchmarks.streams import QUICK_LEAD_S
from benchmarks.streams_trial import Trial, excerpt, judge, run_trial
from config import Settings
from events.kafka.admin import KafkaProbe
from events.kafka.producer import DeliveryFailed
from tests.conftest import wait_for
from tests.support.toy_pipeline import local_ray


@pytest.mark.slow
def test_a_trial_finds_every_incident_reports_every_stage_and_deletes_its_topics(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    local_ray()
    subprocess.run([sys.executable, str(DEMO_SCRIPT), str(tmp_path / "demo.wav")], check=True, capture_output=True)
    audio = excerpt(tmp_path / "demo.wav", tmp_path, lead_s=QUICK_LEAD_S)
    received: list[dict[str, Any]] = []
    with local_alert_sink(received.append) as sink_url:
        settings = with_sink_route(kafka_settings.model_copy(update={"log_json": False}), sink_url)
        trial = run_trial(settings, audio, 2, path="acoustic", folder=tmp_path)

    result = json.loads(json.dumps(asdict(trial)))
    assert set(result) == {field for field in Trial.__dataclass_fields__}
    assert (result["path"], result["streams"], result["streams_with_incident"]) == ("acoustic", 2, 2)
    assert result["caught_up_s"] is not None
    assert result["alerts_dispatched"] == 2 and len(received) >= 2
    assert {"features", "score", "incident", "alert"} <= set(result["latency"])
    stages = {"features", "scorer", "incidents", "alerting", "projections"}
    assert set(result["max_backlog"]) == set(result["seconds_behind"]) == set(result["input_per_stream_s"]) == stages
    assert stages | {"capture", "broker", "machine"} <= set(result["cpu_s"])
    assert result["passed"] == (result["capture_to_incident_p95_s"] < 1.0)
    probe = KafkaProbe(settings.kafka_connection())
    # A deleted topic leaves the broker's metadata a moment after the deletion returned.
    wait_for(
        lambda: not any(name.startswith("bench-acoustic-2-") for name in probe.topics()),
        timeout_s=30,
        what="the trial's topics to be deleted",
    )


def test_a_trial_whose_captures_could_not_reach_kafka_fails_with_the_reason() -> None:
    """An overwhelmed broker is what the search is looking for: it fails that trial instead of the whole run."""
    undelivered = DeliveryFailed("116 message(s) still unacknowledged after 60 s")
    passed, verdict = judge(4, 1.0, 4, 0.2, [undelivered])
    assert not passed
    assert verdict == "1 capture(s) could not hand their audio to Kafka: 116 message(s) still unacknowledged after 60 s"
    assert judge(4, 1.0, 4, 0.2) == (True, "p95 capture->incident 0.200 s < 1.0 s")

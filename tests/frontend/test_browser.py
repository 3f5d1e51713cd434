"""End to end in real headless Chromium: the pipeline's incident stage, alerting actor, projectors and dashboard.

Path: scored audio windows, audio chunks and transcripts published to Kafka -> incident stage (StageRunner) opens
incidents and writes clips -> projectors (in the dashboard process) -> live feed -> server-sent events -> page.
The operator's Acknowledge goes back through the command path onto the incidents topic, where the alerting actor
sees it: the acknowledged incident never escalates, while an unacknowledged one (the control) does.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from actors.alerting.actor import run_alerting
from actors.incidents.stage import build_incident_stage
from actors.stage import StageRunner
from config import Settings, StreamConfig
from config.alerting import AlertingConfig, AlertRoute, EscalationTier
from config.settings import IncidentConfig
from events import Event
from events.catalogue import (
    AlertRequested,
    AudioChunkCaptured,
    DistressScored,
    IncidentAcknowledged,
    LabelScore,
    PhraseHit,
    StreamStarted,
    TranscriptProduced,
    Word,
)
from events.kafka.log import read_all
from frontend.server import DashboardServer
from tests.conftest import wait_for
from tests.frontend.conftest import ALICE_TOKEN, dashboard_config
from tests.support.alerting import JsonReceiver
from tests.support.browser import click, full_page_screenshot, headless_chromium, wait_until
from tests.support.world import RATE, World

WINDOWS = 14
ESCALATE_AFTER_MIN = 0.75
HELP_AT_S = 6.2


def stream_events(
    stream_id: str, start: datetime, *, positives: range, label: str, seed: int, speech: tuple[str, ...] = ()
) -> list[Event]:
    """What capture, the scorer and ASR publish for ``WINDOWS`` seconds of one stream."""
    rng = np.random.default_rng(seed)
    events: list[Event] = [
        StreamStarted(
            stream_id=stream_id,
            occurred_at=start,
            source=f"rtsp://cameras.local/{stream_id}",
            source_kind="url",
            sample_rate=RATE,
            chunk_samples=RATE,
            source_sample_rate=48_000,
            source_channels=2,
            realtime=True,
        )
    ]
    for window in range(WINDOWS):
        at = start + timedelta(seconds=window)
        loud = window in positives
        t = np.arange(RATE) / RATE
        sound = (
            0.5 * np.sin(2 * math.pi * (900 + 300 * np.sin(2 * math.pi * 3 * t)) * t)
            if loud
            else 0.02 * rng.standard_normal(RATE)
        )
        events.append(
            AudioChunkCaptured(
                stream_id=stream_id,
                occurred_at=at,
                sequence=window,
                sample_offset=window * RATE,
                sample_rate=RATE,
                captured_at=at,
                pcm16=(sound * 32767).astype("<i2").tobytes(),
                clipped_samples=0,
                nonfinite_samples=0,
                is_last=False,
            )
        )
        score = 0.82 + 0.02 * (window - positives.start) if loud else 0.08 + 0.01 * (window % 3)
        events.append(
            DistressScored(
                stream_id=stream_id,
                occurred_at=at + timedelta(milliseconds=400),
                sequence=window,
                sample_offset=window * RATE,
                score=score,
                acoustic_probability=score,
                threshold=0.6,
                is_distress=loud,
                labels=(LabelScore(label=label, score=score), LabelScore(label="speech", score=0.35 if loud else 0.6)),
                phrases=(),
                rms_dbfs=-9.0 if loud else -48.0,
                pitch_hz=900.0 if loud else 0.0,
                reason=f"{label} {score:.2f}" if loud else "",
                model_id="distress-cnn",
                model_version="3",
            )
        )
    if speech:
        phrase = PhraseHit(
            phrase="help me", matched_text="help me", score=0.94, start_s=HELP_AT_S + 0.45, end_s=HELP_AT_S + 1.1
        )
        words = tuple(
            Word(text=text, start_s=HELP_AT_S + 0.45 * index, end_s=HELP_AT_S + 0.45 * index + 0.4, probability=0.9)
            for index, text in enumerate(speech)
        )
        events.append(
            TranscriptProduced(
                stream_id=stream_id,
                occurred_at=start + timedelta(seconds=9),
                text=" ".join(speech),
                words=words,
                language="en",
                model_id="whisper-small",
                model_version="1",
                word_timestamps="alignment",
                first_sequence=6,
                last_sequence=8,
                start_sample=6 * RATE,
                end_sample=9 * RATE,
                avg_logprob=-0.15,
                no_speech_prob=0.02,
                is_partial=False,
                guard_flags=(),
                phrases=(phrase,),
            )
        )
    return events


@contextmanager
def running(*targets: Callable[[threading.Event], object]) -> Iterator[None]:
    stop = threading.Event()
    threads = [threading.Thread(target=target, args=(stop,), daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


def e2e_settings(base: Settings, duty: JsonReceiver, supervisor: JsonReceiver) -> Settings:
    return base.model_copy(
        update={
            "dashboard": dashboard_config(run_projectors=True, poll_interval_s=0.2),
            "incidents": IncidentConfig(quiet_period_s=600.0),
            "alerting": AlertingConfig(
                timezone="UTC",
                channels={"duty": duty.url(), "supervisor": supervisor.url()},
                routes=(
                    AlertRoute(
                        name="all",
                        notify=("duty",),
                        escalation=(EscalationTier(after_minutes=ESCALATE_AFTER_MIN, notify=("supervisor",)),),
                    ),
                ),
            ),
            "streams": (
                StreamConfig(id="hall-1", source="rtsp://cameras.local/hall-1", name="Main hall"),
                StreamConfig(id="yard-2", source="rtsp://cameras.local/yard-2", name="Service yard"),
                StreamConfig(id="lobby", source="rtsp://cameras.local/lobby", name="Lobby"),
            ),
        }
    )


def escalations(world: World) -> list[AlertRequested]:
    return [
        consumed.event
        for consumed in read_all(world.bus, [world.bus.catalogue.alerts.name])
        if isinstance(consumed.event, AlertRequested) and consumed.event.kind == "escalation"
    ]


def waveform_drawn(driver: WebDriver) -> bool:
    """Some pixels of the waveform canvas differ from its background colour."""
    return bool(
        driver.execute_script("""
        const canvas = document.getElementById('waveform');
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 0; i < pixels.length; i += 4) {
          if (pixels[i] > 40 || pixels[i + 1] > 60 || pixels[i + 2] > 80) return true;
        }
        return false;""")
    )


def test_a_pipeline_incident_appears_live_plays_and_acknowledging_it_stops_escalation(
    dashboard_settings: Settings, tmp_path: Path
) -> None:
    with JsonReceiver("duty") as duty, JsonReceiver("supervisor") as supervisor:
        settings = e2e_settings(dashboard_settings, duty, supervisor)
        world = World(settings)
        incident_stage = StageRunner(build_incident_stage(settings), world.bus)
        with running(incident_stage.run, lambda stop: run_alerting(settings, stop)):
            with (
                DashboardServer(settings, host="127.0.0.1", port=0) as server,
                headless_chromium(tmp_path / "chromium") as driver,
            ):
                incident_id = operate_the_dashboard(driver, server.url, world)

            [ack] = [
                consumed.event
                for consumed in read_all(world.bus, [world.bus.catalogue.incidents.name])
                if isinstance(consumed.event, IncidentAcknowledged)
            ]
            assert (ack.incident_id, ack.actor) == (incident_id, "alice")
            first_alert = next(
                event
                for event in (consumed.event for consumed in read_all(world.bus, [world.bus.catalogue.alerts.name]))
                if isinstance(event, AlertRequested) and event.incident_id == incident_id
            )
            assert ack.occurred_at - first_alert.occurred_at < timedelta(minutes=ESCALATE_AFTER_MIN), (
                "the browser took longer than the escalation delay: this run cannot show that acknowledging stops it"
            )
            wait_for(
                lambda: any(item.incident_id.startswith("yard-2:") for item in escalations(world)),
                timeout_s=180,
                what="the unacknowledged yard incident (the control) to escalate",
            )
        assert not [item for item in escalations(world) if item.incident_id == incident_id]
        assert supervisor.delivered and duty.delivered


def operate_the_dashboard(driver: WebDriver, url: str, world: World) -> str:
    """Sign in, watch the incidents arrive, open the hall one, play its clip and acknowledge it."""
    driver.get(f"{url}login#token={ALICE_TOKEN}")  # what the one-time sign-in link does
    wait_until(
        driver,
        lambda d: d.find_element(By.ID, "live-state").get_attribute("data-state") == "live",
        "the dashboard to connect its live feed",
    )
    assert "#token" not in driver.current_url
    driver.execute_script("window.distressMarker = 'no reload'")

    start = datetime.now(UTC) - timedelta(seconds=WINDOWS)
    world.publish(
        *stream_events("lobby", start, positives=range(0), label="music", seed=3),
        *stream_events("yard-2", start, positives=range(5, 9), label="glass", seed=2),
        *stream_events(
            "hall-1", start, positives=range(5, 10), label="scream", seed=1, speech=("please", "help", "me")
        ),
    )
    hall = 'tr[data-incident-id^="hall-1:"]'
    wait_until(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-incident-id^="yard-2:"]'),
        "the yard incident to appear",
    )
    wait_until(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, f"{hall} .badge.severity-critical"),
        "the hall incident to appear as critical",
    )
    assert driver.execute_script("return window.distressMarker") == "no reload"
    wait_until(
        driver,
        lambda d: "please help me" in d.find_element(By.CSS_SELECTOR, '[data-stream-id="hall-1"]').text,
        "the hall tile to show the last words",
    )
    full_page_screenshot(driver, "dashboard.png")

    incident_id = str(
        wait_until(
            driver,
            lambda d: d.find_element(By.CSS_SELECTOR, hall).get_attribute("data-incident-id"),
            "the hall incident's id",
        )
    )
    click(driver, f"{hall} a.incident-link", "the hall incident's link")
    wait_until(driver, lambda d: d.find_element(By.ID, "clip"), "the evidence clip player")
    wait_until(driver, waveform_drawn, "the waveform to be drawn")
    canvas = driver.find_element(By.ID, "waveform")
    canvas.click()  # a click seeks; Selenium clicks the middle of the canvas
    canvas.send_keys(Keys.SPACE)  # the keyboard plays
    wait_until(
        driver,
        lambda d: d.execute_script(
            "const a = document.getElementById('clip');"
            "return !a.error && a.readyState >= 2 && !a.paused && a.currentTime > a.duration / 2 + 0.5"
        ),
        "the clip to play from the middle",
    )
    driver.execute_script("document.getElementById('clip').pause()")
    played = float(driver.execute_script("return document.getElementById('clip').duration"))
    recorded = float(canvas.get_attribute("aria-valuemax") or 0)  # the incident's clip_duration_s
    assert played > 10.0 and abs(played - recorded) < 0.05  # from 5 s before the onset to 5 s after the trigger

    click(driver, 'button[data-command="acknowledge"]', "the Acknowledge button")
    wait_until(
        driver,
        lambda d: "Acknowledged by alice" in d.find_element(By.ID, "action-status").text,
        "the acknowledgement to be confirmed",
    )
    wait_until(
        driver,
        lambda d: d.find_element(By.ID, "incident-status").text.lower() == "acknowledged",
        "the header to update live",
    )
    wait_until(
        driver, lambda d: "by alice" in d.find_element(By.ID, "timeline").text, "the timeline to show who acknowledged"
    )
    wait_until(
        driver,
        lambda d: d.find_element(By.CSS_SELECTOR, 'button[data-command="acknowledge"]').get_property("disabled"),
        "Acknowledge to be disabled (it was done)",
    )
    assert [word.text for word in driver.find_elements(By.CSS_SELECTOR, ".word.phrase")] == ["help", "me"]
    full_page_screenshot(driver, "incident.png")
    return incident_id

"""Prometheus metrics of the dashboard process: HTTP traffic, live clients, commands, and incidents by state.

A private registry, so the dashboard can run in a process that already exports other metrics (``distress run``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StateCollector(Collector):
    """Values read at scrape time: incidents per (status, severity), live clients, projector progress."""

    def __init__(
        self,
        incident_counts: Callable[[], Mapping[tuple[str, str], int]],
        live_clients: Callable[[], int],
        projected_events: Callable[[], Mapping[str, int]],
    ) -> None:
        self._incident_counts = incident_counts
        self._live_clients = live_clients
        self._projected_events = projected_events

    def collect(self) -> Iterator[GaugeMetricFamily]:
        incidents = GaugeMetricFamily(
            "distress_incidents", "Incidents in the read model by status and severity", labels=["status", "severity"]
        )
        for (status, severity), count in sorted(self._incident_counts().items()):
            incidents.add_metric([status, severity], count)
        yield incidents
        yield GaugeMetricFamily(
            "distress_dashboard_live_clients", "Open live-update (SSE) connections", value=self._live_clients()
        )
        projected = GaugeMetricFamily(
            "distress_dashboard_projected_events",
            "Events applied by this process's projectors since start",
            labels=["projection"],
        )
        for name, events in sorted(self._projected_events().items()):
            projected.add_metric([name], events)
        yield projected


class DashboardMetrics:
    def __init__(
        self,
        *,
        incident_counts: Callable[[], Mapping[tuple[str, str], int]],
        live_clients: Callable[[], int],
        projected_events: Callable[[], Mapping[str, int]],
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "distress_dashboard_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "distress_dashboard_request_seconds", "HTTP request handling time", ["route"], registry=self.registry
        )
        self.commands = Counter(
            "distress_dashboard_commands",
            "Operator commands by action and outcome",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.logins = Counter(
            "distress_dashboard_sign_ins", "Sign-in attempts by outcome", ["outcome"], registry=self.registry
        )
        self.registry.register(_StateCollector(incident_counts, live_clients, projected_events))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

"""Where the cluster is and how every client of it is configured; librdkafka's log lines go to our logging."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException

Partition = tuple[str, int]


class BusError(Exception):
    """Kafka refused or lost something the caller must know about."""


# What a call into the transport may raise when Kafka is unavailable: our own errors, and the client's own where
# it raises one directly (a produce the local queue refuses, a consumer that fails outright).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (BusError, KafkaException)


def client_reason(error: BaseException) -> str | None:
    """The Kafka client's own reason for ``error`` when it is the client's exception, else None."""
    if not isinstance(error, KafkaException):
        return None
    return str(error.args[0].str()) if error.args and hasattr(error.args[0], "str") else str(error)


class _LibrdkafkaLog:
    """librdkafka's own log lines, routed into our logging (logger ``librdkafka``) instead of raw ``%3|...`` lines
    on stderr.

    Its errors are mostly connection attempts it retries by itself (a broker restarting, a refused connect), so
    they are logged as warnings; a failure the caller must act on reaches it as an exception or error event.
    """

    _logger = logging.getLogger("librdkafka")

    def log(self, level: int, message: str, *args: object) -> None:
        """confluent-kafka calls ``log(level, "%s [%s] %s", facility, client, text)`` from the client's poll."""
        if len(args) == 3:
            facility, client, text = args
            self._logger.log(min(level, logging.WARNING), "%s", text, extra={"facility": facility, "client": client})
        else:
            self._logger.log(min(level, logging.WARNING), message, *args)


LIBRDKAFKA_LOG = _LibrdkafkaLog()


@dataclass(frozen=True, kw_only=True)
class KafkaConnection:
    """Where the cluster is and how to talk to it; ``client_options`` passes SASL/SSL settings through verbatim."""

    bootstrap_servers: str
    client_options: Mapping[str, str] = field(default_factory=dict)

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "logger": LIBRDKAFKA_LOG,
            # Brokers close idle connections routinely; librdkafka reconnects when needed, nothing to report.
            "log.connection.close": False,
            **self.client_options,
            **overrides,
        }

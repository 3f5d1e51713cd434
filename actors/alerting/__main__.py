"""``python -m actors.alerting``: the alerting actor alone in a process (what ``distress alerts run`` runs), for a
service manager or container that should not load the whole command line."""

from __future__ import annotations

import sys

from actors.alerting.actor import run_until_signalled
from actors.alerting.routing import AlertingSetupError
from config import SettingsError, load_settings
from config.logging import configure_logging


def main() -> int:
    try:
        settings = load_settings()
        configure_logging(settings.log_level, json_lines=settings.log_json)
        run_until_signalled(settings)
    except (SettingsError, AlertingSetupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

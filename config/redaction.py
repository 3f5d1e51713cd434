"""Removing secrets from anything that may be logged, stored in an event or shown on a screen.

Apprise and stream URLs carry credentials in the userinfo part, in query tokens and (for webhook services such
as Slack) in the path, so a redacted URL keeps only what an operator needs to recognise the channel.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://([^\s'\"<>]+)")


def redact_url(url: str) -> str:
    """``scheme://host[:port]/…`` with userinfo, path tokens and query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if not parts.scheme or "://" not in url:
        return url
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    userinfo = "***@" if "@" in parts.netloc else ""
    path = "/***" if parts.path.strip("/") else ""
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{userinfo}{host}{port}{path}{query}"


def redact_text(text: str) -> str:
    """Redact every URL found in free text (log messages, error strings from libraries)."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)

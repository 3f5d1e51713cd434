"""Removing secrets from anything that may be logged, stored in an event or shown on a screen.

Apprise and stream URLs carry credentials in the userinfo part, in query tokens and (for webhook services such
as Slack) in the path, so a redacted URL keeps only what an operator needs to recognise the channel. Many Apprise
schemes also put a token where a host would be (``slack://TokenA/TokenB/TokenC``, ``tgram://123:bot-token/``,
``pbul://o.AccessToken``), so outside the schemes whose host is always a network address, a host survives only
when it plainly is one.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://([^\s'\"<>]+)")
# Lower-case DNS labels with an alphabetic top-level label: a token in the host slot is mixed-case or a bare word.
_DNS_NAME = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\.?$")
_NETWORK_SCHEMES = frozenset(
    {
        "http",
        "https",
        "ws",
        "wss",
        "ftp",
        "ftps",
        "sftp",
        "rtsp",
        "rtsps",
        "rtmp",
        "rtmps",
        "srt",
        "udp",
        "tcp",
        "rtp",
        "mms",
        "mmsh",
        "file",
        "json",
        "jsons",
        "xml",
        "xmls",
        "form",
        "forms",
        "mailto",
        "mailtos",
        "postgresql",
        "postgresql+psycopg",
        "postgres",
        "mysql",
        "sqlite",
        "kafka",
    }
)


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
    if host and parts.scheme.lower() not in _NETWORK_SCHEMES and not _plainly_a_host(url, host):
        host, port = "***", ""
    elif ":" in host:  # IPv6 literal
        host = f"[{host}]"
    userinfo = "***@" if "@" in parts.netloc else ""
    path = "/***" if parts.path.strip("/") else ""
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{userinfo}{host}{port}{path}{query}"


def redact_text(text: str) -> str:
    """Redact every URL found in free text (log messages, error strings from libraries)."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


def _plainly_a_host(url: str, host: str) -> bool:
    """An IP literal, ``localhost`` or a lower-case DNS name as written (``hostname`` lower-cases tokens)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return host == "localhost" or (_DNS_NAME.match(host) is not None and host in url)

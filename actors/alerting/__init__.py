"""Alerting: incident transitions become notifications through Apprise, exactly once per transition and channel.

``routing`` (channels and rules), ``messages`` (what is said), ``dispatcher`` (one Apprise attempt), ``ledger`` (the
alerts topic as the record of what was requested and sent) and ``actor`` (the stage that ties them together).
"""

"""The dashboard's security suite (issue #31, OWASP ASVS level 2 as the yardstick), one module per finding:

1. ``test_1_redirect``: after signing in, only a path on this origin (real Chromium).
2. ``test_2_sessions``: sign-out and ``distress dashboard rotate-key`` hold across restarts (SQLite, PostgreSQL).
3. ``test_3_throttle``: the sign-in throttle can be neither dodged (X-Forwarded-For) nor used to lock others out.
4. ``test_4_link``: the no-accounts sign-in link works once, briefly, and leaves no token in the browser.
5. ``test_5_bodies``: bodies bounded before they are read; refusals never echo input.
6. ``test_6_web``: CSRF, traversal, injection, security headers and cookie flags.
"""

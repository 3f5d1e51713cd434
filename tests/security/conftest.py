"""The security suite runs the dashboard as it is deployed (a real server, database and browser) on the test
broker, with the operator accounts of the dashboard tests (alice: a token, bob: a password)."""

from tests.frontend.conftest import dashboard_settings, world  # noqa: F401 (fixtures, shared)
from tests.projections.conftest import postgres_databases  # noqa: F401 (a fixture, shared)

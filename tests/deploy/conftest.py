"""The gate of the tests that need the NATS subchart (see tests/deploy/chart.py)."""

from __future__ import annotations

import pytest

from tests.deploy.chart import NATS_SUBCHART_PRESENT, subchart_absent_outcome


@pytest.fixture
def nats_subchart() -> None:
    """Skips the test, with the reason shown, when the NATS subchart was not fetched; fails it instead
    when BRIDGE_REQUIRE_NATS_SUBCHART is set."""
    if NATS_SUBCHART_PRESENT:
        return
    outcome, reason = subchart_absent_outcome()
    if outcome == "fail":
        pytest.fail(reason)
    pytest.skip(reason)

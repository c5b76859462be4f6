"""Fixtures for the quality tests: the simulated street of the row-gate tests, once a session."""

from __future__ import annotations

import pytest
from test_gate_street import Street, street


@pytest.fixture(scope="session")
def gate_street() -> Street:
    """The small street of :mod:`test_gate_street`, simulated when a test first asks for it
    (never at import: collecting or selecting other tests simulates nothing)."""
    return street()

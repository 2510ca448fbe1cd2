"""Fixtures shared by every test."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _not_under_dacrun(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests form their own jobs: ignore a dacrun environment."""
    for var in list(os.environ):
        if var.startswith("DAC_"):
            monkeypatch.delenv(var)

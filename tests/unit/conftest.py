"""Fixtures of the unit layer (no services)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary CDC_HOME (its lake a SQLite catalog), no cdc.yaml, and no CDC_* variable from outside."""
    monkeypatch.chdir(tmp_path)
    for var in [v for v in os.environ if v.startswith("CDC_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("CDC_HOME", str(tmp_path / "home"))
    return tmp_path / "home"

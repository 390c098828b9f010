"""Fixtures shared by every layer: one Spark session per test run (starting one costs ~15 s)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cdc.config import Settings, load_settings
from cdc.stack import jars


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def spark(settings: Settings) -> Iterator[Any]:
    from cdc.spark import session

    jars.install(settings.cache)
    s = session(settings)
    yield s
    s.stop()

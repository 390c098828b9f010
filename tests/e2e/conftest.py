"""Session fixtures on the real local stack. A service that cannot start fails the run; nothing skips."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cdc import connectors
from cdc.config import Settings
from cdc.lake.catalog import open_catalog
from cdc.stack import jars, services


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Settings]:
    """Start what is not running; stop at the end only what this session started."""
    jars.install(settings.cache)
    started = services.up(settings)
    try:
        connectors.apply(settings)
        yield settings
    finally:
        if started:
            services.down(settings, only=started)


@pytest.fixture(scope="session")
def catalog(stack: Settings) -> Any:
    return open_catalog(stack)

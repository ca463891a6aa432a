"""Shared fixtures: the anyio backend and a DashScope emulator on 127.0.0.1, port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig, serve_emulator


@pytest.fixture
def anyio_backend() -> str:
    # uvicorn (the emulator's server) runs on asyncio only.
    return "asyncio"


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """The configuration of the ``emulator`` fixture; override it in a module or parametrize it.

    The synthetic signal keeps tests fast and independent of the offline extra.
    """
    return EmulatorConfig(audio="signal")


@pytest.fixture
async def emulator(emulator_config: EmulatorConfig) -> AsyncIterator[Emulator]:
    """A running emulator; ``emulator.url`` is its realtime endpoint, the key is ``emulator.config.api_key``."""
    async with serve_emulator(emulator_config, host="127.0.0.1", port=0) as running:
        yield running

"""Shared fixtures: the anyio backend and a DashScope emulator on 127.0.0.1, port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig, serve_emulator

_ISOLATED_ENV = (
    "DASHSCOPE_API_KEY",
    "DASHSCOPE_REGION",
    "DASHSCOPE_WORKSPACE",
    "DASHSCOPE_REALTIME_URL",
    "DASHSCOPE_HTTP_BASE_URL",
    "DASHSCOPE_MAX_CONNECTIONS",
    "DASHSCOPE_MAX_SEGMENT_CHARS",
    "ALIBABA_CLOUD_PROFILE",
    "ALICLOUD_PROFILE",
    "OUTPUT_DIR",
    "TTS_MCP_AUTH_TOKEN",
)


@pytest.fixture(autouse=True)
def isolated_environment(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Keep the developer's key, credentials file and output directory out of every test.

    Live tests (marked ``live``) keep the real environment: they skip unless it is configured.
    """
    if request.node.get_closest_marker("live"):
        return
    for name in _ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))


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

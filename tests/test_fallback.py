"""The fallback composition: realtime first, then the HTTP API, never speaking the same text twice."""

from __future__ import annotations

import socket
import sys
import wave
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from alicloud_tts_realtime import (
    AudioChunk,
    ConnectionFailedError,
    InvalidRequestError,
    ServiceError,
    Settings,
    build_request,
)
from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig, serve_emulator
from alicloud_tts_realtime.engines import select_engine
from alicloud_tts_realtime.engines.fallback import FallbackEngine
from alicloud_tts_realtime.engines.http_sse import HttpEngine
from alicloud_tts_realtime.engines.realtime import RealtimeEngine
from alicloud_tts_realtime.service import RetryOptions, synthesize

pytestmark = pytest.mark.anyio

TEXT = "If realtime fails before any audio, the HTTP API speaks instead."
NO_RETRY = RetryOptions(max_retries=0)


def settings_for(emulator: Emulator, *, http_base_url: str | None = None) -> Settings:
    return Settings(
        api_key=SecretStr("sk-emulator"),
        realtime_url=emulator.url,
        http_base_url=http_base_url or emulator.http_base_url,
        connect_timeout=3,
        idle_timeout=3,
    )


def fallback_for(settings: Settings) -> FallbackEngine:
    return FallbackEngine([RealtimeEngine(settings), HttpEngine(settings)])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_realtime_refusing_falls_back_to_http() -> None:
    async with serve_emulator(EmulatorConfig(audio="signal", reject_status=503)) as emulator:
        engine, reason = select_engine(settings_for(emulator), "fallback")
        assert isinstance(engine, FallbackEngine) and [e.name for e in engine.engines] == ["realtime", "http"]
        assert "fallback" in reason
        async with engine:
            response = await synthesize(build_request(text=TEXT, voice="Cherry"), engine, retry=NO_RETRY)
        assert emulator.sessions[0].status == 503  # realtime really was tried first
    assert response.engine == "http" and response.model == "qwen3-tts-flash"
    assert response.duration_ms > 2000 and response.characters == len(TEXT)


async def test_working_realtime_is_used_and_http_is_never_called(emulator: Emulator) -> None:
    # An unreachable HTTP API would fail loudly if the fallback were used.
    settings = settings_for(emulator, http_base_url=f"http://127.0.0.1:{closed_port()}/api/v1")
    async with fallback_for(settings) as engine:
        response = await synthesize(build_request(text=TEXT, voice="Cherry"), engine, retry=NO_RETRY)
    assert response.engine == "realtime" and response.model == "qwen3-tts-flash-realtime"
    assert response.session_id and response.session_id.startswith("sess_")


async def test_a_failure_after_audio_is_final_and_nothing_is_spoken_twice() -> None:
    async with serve_emulator(EmulatorConfig(audio="signal", drop_after_chunks=2)) as emulator:
        chunks = 0
        async with fallback_for(settings_for(emulator)) as engine:
            with pytest.raises(ConnectionFailedError, match="mid-stream"):
                async for item in engine.stream(build_request(text=TEXT, voice="Cherry")):
                    chunks += isinstance(item, AudioChunk)
    assert chunks == 2  # the two realtime chunks, and no HTTP audio after them


async def test_when_http_cannot_serve_the_request_the_realtime_error_is_reported() -> None:
    # The HTTP API has no 16 kHz output: its local refusal must not hide the realtime failure.
    refusing = EmulatorConfig(audio="signal", reject_status=503)
    async with serve_emulator(refusing) as emulator, fallback_for(settings_for(emulator)) as engine:
        with pytest.raises(ServiceError) as caught:
            await synthesize(build_request(text=TEXT, voice="Cherry", sample_rate=16000), engine, retry=NO_RETRY)
    assert caught.value.status == 503


async def test_when_both_fail_the_last_failure_is_reported() -> None:
    async with serve_emulator(EmulatorConfig(audio="signal", reject_status=503)) as emulator:
        settings = settings_for(emulator, http_base_url=f"http://127.0.0.1:{closed_port()}/api/v1")
        async with fallback_for(settings) as engine:
            with pytest.raises(ConnectionFailedError, match="HTTP API"):
                await synthesize(build_request(text=TEXT, voice="Cherry"), engine, retry=NO_RETRY)


async def test_a_local_error_of_the_first_engine_is_raised_at_once(emulator: Emulator) -> None:
    # An instruction on a flash model is refused by the HTTP engine locally; given first, it is final.
    settings = settings_for(emulator)
    engine = FallbackEngine([HttpEngine(settings, model="qwen3-tts-flash"), RealtimeEngine(settings)])
    async with engine:
        with pytest.raises(InvalidRequestError, match="instruction"):
            await synthesize(build_request(text=TEXT, voice="Cherry", instruction="calm"), engine, retry=NO_RETRY)
    assert not emulator.sessions  # the realtime engine was not tried


def test_a_fallback_needs_two_engines() -> None:
    with pytest.raises(InvalidRequestError):
        FallbackEngine([RealtimeEngine(Settings())])


async def test_cli_speak_with_the_fallback_engine(tmp_path: Path) -> None:
    async with serve_emulator(EmulatorConfig(audio="signal", reject_status=503)) as emulator:
        env = {
            "DASHSCOPE_API_KEY": "sk-emulator",
            "DASHSCOPE_REALTIME_URL": emulator.url,
            "DASHSCOPE_HTTP_BASE_URL": emulator.http_base_url,
            "OUTPUT_DIR": str(tmp_path),
            "PATH": "",
        }
        out = tmp_path / "speech.wav"
        with anyio.fail_after(30):
            result = await anyio.run_process(
                [
                    sys.executable,
                    "-m",
                    "alicloud_tts_realtime",
                    "speak",
                    TEXT,
                    "--engine",
                    "fallback",
                    "--output",
                    str(out),
                ],
                env=env,
                check=False,
            )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == str(out)
    with wave.open(str(out)) as reader:
        assert reader.getframerate() == 24000 and reader.getnframes() > 24000

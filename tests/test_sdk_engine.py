"""The official-SDK engine (dashscope's ``QwenTtsRealtime``) against the emulator over loopback."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from alicloud_tts_realtime import (
    AudioChunk,
    AuthenticationError,
    ConfigurationError,
    ConnectionFailedError,
    NoAudioError,
    ServiceError,
    Settings,
    SpeechRequest,
    SynthesisOutcome,
    build_request,
)
from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig, serve_emulator
from alicloud_tts_realtime.engines import select_engine
from alicloud_tts_realtime.engines.realtime import RealtimeEngine
from alicloud_tts_realtime.engines.sdk import SdkEngine
from alicloud_tts_realtime.service import RetryOptions, synthesize

dashscope = pytest.importorskip("dashscope")

pytestmark = pytest.mark.anyio

TEXT = "Hello from the official SDK, measured against the native client."


def settings_for(emulator: Emulator, key: str = "sk-emulator") -> Settings:
    return Settings(api_key=SecretStr(key), realtime_url=emulator.url, connect_timeout=5, idle_timeout=5)


async def collect(engine: Any, request: SpeechRequest) -> tuple[bytes, SynthesisOutcome]:
    pcm, outcome = [], None
    async for item in engine.stream(request):
        if isinstance(item, AudioChunk):
            pcm.append(item.pcm)
        else:
            outcome = item
    assert outcome is not None
    return b"".join(pcm), outcome


def sdk_threads() -> list[threading.Thread]:
    # The SDK runs websocket-client's run_forever on an unnamed thread; ours is named.
    return [t for t in threading.enumerate() if "run_forever" in repr(getattr(t, "_target", None))]


async def test_completes_a_session_with_the_same_audio_as_the_native_client(emulator: Emulator) -> None:
    request = build_request(text=TEXT, voice="Cherry", language_type="English", sample_rate=16000)
    async with SdkEngine(settings_for(emulator)) as engine:
        sdk_pcm, outcome = await collect(engine, request)
    async with RealtimeEngine(settings_for(emulator)) as native:
        native_pcm, _ = await collect(native, request)
    assert len(sdk_pcm) / 2 / 16000 > 2 and sdk_pcm == native_pcm  # the emulator's audio is deterministic
    assert outcome.finish_reason == "stop" and outcome.characters == len(TEXT)
    assert outcome.session_id and outcome.session_id.startswith("sess_")
    record = emulator.sessions[0]
    assert record.user_agent and record.user_agent.startswith("dashscope/")  # really the SDK on the wire
    assert [e.type for e in record.events] == [
        "session.update",
        "input_text_buffer.append",
        "input_text_buffer.commit",
        "session.finish",
    ]
    assert record.events[0].session.mode == "commit" and record.events[0].session.language_type == "English"
    with anyio.fail_after(2):
        while emulator.open_sessions or sdk_threads():
            await anyio.sleep(0.01)
    assert record.closed_by == "client" and record.close_code == 1000


async def test_the_key_never_stays_in_the_sdk_global(emulator: Emulator) -> None:
    saved = dashscope.api_key
    dashscope.api_key = "sk-someone-else"
    try:
        async with SdkEngine(settings_for(emulator)) as engine:
            stream = engine.stream(build_request(text="Hi.", voice="Cherry"))
            assert isinstance(await stream.__anext__(), AudioChunk)
            assert dashscope.api_key == "sk-someone-else"  # restored right after construction
            await stream.aclose()
    finally:
        dashscope.api_key = saved


async def test_a_refused_key_fails_fast_instead_of_after_the_sdk_5_s(emulator: Emulator) -> None:
    started = time.perf_counter()
    async with SdkEngine(settings_for(emulator, key="sk-wrong-key")) as engine:
        with pytest.raises(AuthenticationError) as caught:
            await collect(engine, build_request(text="Hi.", voice="Cherry"))
    assert time.perf_counter() - started < 2
    assert caught.value.status == 401 and caught.value.code == "InvalidApiKey"
    assert "sk-wrong-key" not in str(caught.value)


async def test_an_unknown_model_is_no_audio(emulator: Emulator) -> None:
    # The real service (and the emulator) answer an unknown model with session.created, then a close.
    request = SpeechRequest(text="Hi.", voice="Cherry", model="qwen3-tts-flash-realtime-2099-01-01")
    async with SdkEngine(settings_for(emulator)) as engine:
        with pytest.raises(NoAudioError):
            await collect(engine, request)


async def test_refusals_and_drops_map_like_the_native_client() -> None:
    request = build_request(text=TEXT, voice="Cherry")
    refusing = EmulatorConfig(audio="signal", reject_status=503)
    async with serve_emulator(refusing) as emulator, SdkEngine(settings_for(emulator)) as engine:
        with pytest.raises(ServiceError) as refused:
            await collect(engine, request)
    assert refused.value.status == 503 and refused.value.retryable
    dropping = EmulatorConfig(audio="signal", drop_after_chunks=3)
    async with serve_emulator(dropping) as emulator, SdkEngine(settings_for(emulator)) as engine:
        with pytest.raises(ConnectionFailedError, match="mid-stream"):
            await collect(engine, request)


async def test_a_slow_consumer_gets_every_chunk_through_the_bounded_queue(emulator: Emulator) -> None:
    request = build_request(text=TEXT, voice="Cherry")
    async with RealtimeEngine(settings_for(emulator)) as native:
        expected, _ = await collect(native, request)
    received = []
    async with SdkEngine(settings_for(emulator), queue_size=2) as engine:
        async for item in engine.stream(request):
            if isinstance(item, AudioChunk):
                received.append(item.pcm)
                await anyio.sleep(0.005)
    assert b"".join(received) == expected


async def test_closing_early_ends_the_session_and_the_sdk_thread(emulator: Emulator) -> None:
    async with SdkEngine(settings_for(emulator)) as engine:
        stream = engine.stream(build_request(text=TEXT * 3, voice="Cherry"))
        assert isinstance(await stream.__anext__(), AudioChunk)
        await stream.aclose()
    with anyio.fail_after(3):
        while emulator.open_sessions or sdk_threads():
            await anyio.sleep(0.01)


async def test_service_and_select_engine_use_it(emulator: Emulator) -> None:
    engine, reason = select_engine(settings_for(emulator), "sdk")
    assert isinstance(engine, SdkEngine) and reason == "sdk: requested"
    async with engine:
        response = await synthesize(build_request(text=TEXT, voice="Ethan"), engine, retry=RetryOptions(max_retries=0))
    assert response.engine == "sdk" and response.first_audio_ms is not None and response.duration_ms > 2000
    with pytest.raises(ConfigurationError):
        select_engine(Settings(), "sdk")


async def test_a_url_with_a_query_is_refused_before_connecting(emulator: Emulator) -> None:
    # §8 #7: the SDK appends "?model=" to whatever URL it gets.
    settings = Settings(api_key=SecretStr("sk-emulator"), realtime_url=emulator.url + "?x=1")
    with pytest.raises(ConfigurationError, match="query"):
        await collect(SdkEngine(settings), build_request(text="Hi.", voice="Cherry"))
    assert not emulator.sessions


async def test_a_drop_before_audio_is_a_sentence_and_retryable() -> None:
    # Issue 14 item 9: the SDK reports a drop as close None; that is a dropped connection, not "close None".
    dropping = EmulatorConfig(audio="signal", drop_after_chunks=0)
    async with serve_emulator(dropping) as emulator, SdkEngine(settings_for(emulator)) as engine:
        with pytest.raises((ConnectionFailedError, NoAudioError)) as info:
            await collect(engine, build_request(text="Hi.", voice="Cherry"))
    message = str(info.value)
    assert info.value.retryable and "None" not in message
    assert message.endswith(".") and "dropped" in message

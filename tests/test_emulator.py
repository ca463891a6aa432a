"""The DashScope emulator, driven over loopback by a raw websockets client and by the official SDK.

Frames are built and parsed with :mod:`alicloud_tts_realtime.protocol` only; the package's own
client is not used, so these tests pin the emulator to the protocol document (§3, §9).
"""

from __future__ import annotations

import array
import base64
import json
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from alicloud_tts_realtime import ConfigurationError
from alicloud_tts_realtime import protocol as p
from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig, serve_emulator
from alicloud_tts_realtime.emulator.core import (
    CancelResponse,
    ContinueResponse,
    EmulatorSession,
    Rechunker,
    StartResponse,
    billed_characters,
)
from alicloud_tts_realtime.emulator.signal import SpeechSignal

pytestmark = pytest.mark.anyio

FLASH = "qwen3-tts-flash-realtime"
ID = re.compile(r"^(sess|resp|item|event)_[0-9A-Za-z]{21}$")
SIGNAL = EmulatorConfig(audio="signal")


class Client:
    """A raw test client: protocol events over a websockets connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, event: Any) -> str:
        await self.ws.send(p.dump_event(event))
        return str(event.event_id)

    async def recv(self, timeout: float = 5) -> Any:
        with anyio.fail_after(timeout):
            event = p.parse_server_event(await self.ws.recv())
        assert not isinstance(event, p.UnknownEvent), event
        assert ID.match(event.event_id), event
        return event

    async def until(self, type_: str, timeout: float = 5) -> list[Any]:
        """Receive events up to and including the first of ``type_``."""
        events = []
        with anyio.fail_after(timeout):
            while True:
                events.append(await self.recv())
                if events[-1].type == type_:
                    return events

    async def update(self, **session: Any) -> Any:
        event_id = await self.send(p.SessionUpdate(session=p.SessionConfig(**session)))
        reply = await self.recv()
        return reply, event_id

    async def speak(self, text: str) -> list[Any]:
        """Append + commit in commit mode; return the events up to response.done."""
        await self.send(p.InputTextBufferAppend(text=text))
        await self.send(p.InputTextBufferCommit())
        return await self.until("response.done")


@asynccontextmanager
async def session(
    emulator: Emulator, model: str = FLASH, key: str | None = "sk-emulator", **headers: str
) -> AsyncIterator[Client]:
    """Connect, check ``session.created``, yield the client; closes with 1000 at the end."""
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with connect(f"{emulator.url}?model={model}", additional_headers=headers) as ws:
        client = Client(ws)
        created = await client.recv()
        assert created.type == "session.created"
        yield client


def pcm_of(events: list[Any]) -> bytes:
    deltas = [base64.b64decode(e.delta) for e in events if e.type == "response.audio.delta"]
    assert all(len(d) % 2 == 0 and d for d in deltas)
    return b"".join(deltas)


def cycle(events: list[Any]) -> list[str]:
    """Event types with runs of deltas collapsed to one."""
    types: list[str] = []
    for e in events:
        if not (e.type == "response.audio.delta" and types and types[-1] == e.type):
            types.append(e.type)
    return types


# --- handshake and session configuration ---------------------------------------------------------


async def test_session_created_has_the_observed_shape(emulator: Emulator) -> None:
    async with connect(
        f"{emulator.url}?model={FLASH}&extra=1", additional_headers={"Authorization": "Bearer sk-emulator"}
    ) as ws:
        raw = json.loads(await ws.recv())
        assert emulator.open_sessions == 1
    created = p.parse_server_event(raw)
    assert isinstance(created, p.SessionCreated)
    assert raw["session"] == {
        "id": created.session.id,
        "object": "realtime.session",
        "mode": "server_commit",
        "model": FLASH,
        "voice": "Cherry",
        "response_format": "pcm",
        "sample_rate": 24000,
    }
    assert ID.match(created.session.id or "") and (created.session.id or "").startswith("sess_")
    await wait_closed(emulator)
    assert emulator.sessions[0].close_code == 1000 and emulator.sessions[0].closed_by == "client"


async def test_session_update_merges_and_echoes_language_lower_cased(emulator: Emulator) -> None:
    async with session(emulator) as client:
        reply, _ = await client.update(voice="Ethan", mode="commit", sample_rate=16000, language_type="Chinese")
        assert isinstance(reply, p.SessionUpdated)
        assert reply.session.model_dump(exclude_none=True) == {
            "id": reply.session.id,
            "object": "realtime.session",
            "model": FLASH,
            "voice": "Ethan",
            "mode": "commit",
            "response_format": "pcm",
            "sample_rate": 16000,
            "language_type": "chinese",
        }
        reply, _ = await client.update(voice="Cherry", speech_rate=1.5, enable_tn=True)  # merged, extras accepted
        assert (reply.session.voice, reply.session.mode, reply.session.sample_rate) == ("Cherry", "commit", 16000)
        assert reply.session.speech_rate is None  # not echoed by default (§11 q2)


@pytest.mark.parametrize(
    ("model", "fields", "param"),
    [
        (FLASH, {"voice": "Nobody"}, "session.voice"),
        (FLASH, {"voice": "cherry"}, "session.voice"),  # voices are case-sensitive (§4.2)
        (FLASH, {"voice": "Cherry", "sample_rate": 22050}, "session.sample_rate"),
        (FLASH, {"voice": "Cherry", "instructions": "whisper"}, "session.instructions"),
        (FLASH, {"voice": "Cherry", "volume": 101}, "session.volume"),
        (FLASH, {"voice": "Cherry", "language_type": "Klingon"}, "session.language_type"),
        ("qwen-tts-realtime", {"voice": "Cherry", "response_format": "mp3"}, "session.response_format"),
        (FLASH, {"voice": "Cherry", "mode": "streaming"}, "session.mode"),
    ],
)
async def test_invalid_session_update_is_an_error_and_keeps_the_connection(
    emulator: Emulator, model: str, fields: dict[str, Any], param: str
) -> None:
    async with session(emulator, model=model) as client:
        if "mode" in fields:  # not representable by the typed model: send the frame as a peer would
            event_id = "event_bad_mode"
            await client.ws.send(json.dumps({"event_id": event_id, "type": "session.update", "session": fields}))
            reply = await client.recv()
        else:
            reply, event_id = await client.update(**fields)
        assert isinstance(reply, p.ErrorEvent)
        assert reply.error.model_dump(exclude={"message"}) == {
            "type": "invalid_request_error",
            "code": "invalid_value",
            "param": param,
            "event_id": event_id,
        }
        reply, _ = await client.update(voice="Cherry")
        assert reply.type == "session.updated"


async def test_voice_clone_models_take_enrolled_voices_only(emulator: Emulator) -> None:
    async with session(emulator, model="qwen3-tts-vc-realtime-2026-01-15") as client:
        reply, _ = await client.update(voice="Cherry")
        assert isinstance(reply, p.ErrorEvent) and reply.error.param == "session.voice"
        reply, _ = await client.update(voice="qwen-tts-vc-my-voice-001")
        assert reply.type == "session.updated"


async def test_instructions_are_accepted_on_instruct_models(emulator: Emulator) -> None:
    async with session(emulator, model="qwen3-tts-instruct-flash-realtime") as client:
        reply, _ = await client.update(voice="Cherry", instructions="calm", optimize_instructions=True)
        assert reply.type == "session.updated"


async def test_session_update_after_text_is_rejected(emulator: Emulator) -> None:
    async with session(emulator) as client:
        await client.update(voice="Cherry", mode="commit")
        await client.send(p.InputTextBufferAppend(text="Hi"))
        reply, event_id = await client.update(voice="Ethan")
        assert isinstance(reply, p.ErrorEvent)
        assert reply.error.message == "Session update error: session already started or finished or failed."
        assert reply.error.event_id == event_id


async def test_unknown_event_type_is_an_error_and_keeps_the_connection(emulator: Emulator) -> None:
    async with session(emulator) as client:
        await client.ws.send(json.dumps({"event_id": "event_x", "type": "conversation.item.create"}))
        reply = await client.recv()
        assert isinstance(reply, p.ErrorEvent)
        assert (reply.error.type, reply.error.event_id) == ("invalid_request_error", "event_x")
        await client.send(p.InputTextBufferClear())
        assert (await client.recv()).type == "input_text_buffer.cleared"


# --- commit mode ---------------------------------------------------------------------------------


async def test_commit_mode_runs_the_exact_response_cycle(emulator: Emulator) -> None:
    text = "你好, world"
    async with session(emulator) as client:
        await client.update(voice="Cherry", mode="commit", sample_rate=16000)
        await client.send(p.InputTextBufferAppend(text=text))
        await anyio.sleep(0.05)
        assert emulator.sessions[-1].sent[-1] == "session.updated"  # commit mode: nothing before commit
        await client.send(p.InputTextBufferCommit())
        events = await client.until("response.done")
    assert cycle(events) == ["input_text_buffer.committed", *p.RESPONSE_CYCLE]
    assert events[0].item_id == ""
    created, done = events[1], events[-1]
    response_id, item_id = created.response.id, events[2].item.id
    assert response_id.startswith("resp_") and item_id.startswith("item_")
    assert created.response.status == "in_progress" and created.response.voice == "Cherry"
    for e in events[3:-2]:
        assert (e.response_id, e.item_id, e.output_index, e.content_index) == (response_id, item_id, 0, 0)
    pcm = pcm_of(events)
    assert 0.5 < len(pcm) / 2 / 16000 < 3  # ~0.9 s of audio at the session rate
    assert done.response.status == "completed"
    assert done.response.modalities == ["text", "audio"]
    assert done.response.output[0].content[0].transcript == ""
    usage = done.response.usage
    assert usage.characters == billed_characters(text) == 2 * 2 + 7
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.output_tokens_details["audio_tokens"] == usage.output_tokens > 0


async def test_audio_duration_grows_with_text(emulator: Emulator) -> None:
    async with session(emulator) as client:
        await client.update(voice="Cherry", mode="commit")
        short = len(pcm_of(await client.speak("Hello.")))
        long = len(pcm_of(await client.speak("Hello, this sentence is a good deal longer than the first one.")))
        cjk = len(pcm_of(await client.speak("请描述图片中的颜色和形状。")))
    assert long > 4 * short
    assert 2.0 < cjk / 2 / 24000 < 4.0  # 12 ideographs at ~220 ms each, plus the final pause


async def test_empty_commit_is_an_error(emulator: Emulator) -> None:
    async with session(emulator) as client:
        await client.update(voice="Cherry", mode="commit")
        event_id = await client.send(p.InputTextBufferCommit())
        reply = await client.recv()
        assert isinstance(reply, p.ErrorEvent) and reply.error.event_id == event_id
        await client.send(p.InputTextBufferAppend(text="Dropped."))
        await client.send(p.InputTextBufferClear())
        assert (await client.recv()).type == "input_text_buffer.cleared"
        await client.send(p.InputTextBufferCommit())
        assert (await client.recv()).type == "error"


async def test_two_commits_are_queued_as_sequential_responses(emulator: Emulator) -> None:
    async with session(emulator) as client:
        await client.update(voice="Cherry", mode="commit")
        for text in ("First one.", "Second one."):
            await client.send(p.InputTextBufferAppend(text=text))
            await client.send(p.InputTextBufferCommit())
        events = await client.until("response.done")
        events += await client.until("response.done")
        await client.send(p.SessionFinish())
        assert (await client.recv()).type == "session.finished"
    types = cycle(events)
    assert types.count("input_text_buffer.committed") == 2
    first_done = types.index("response.done")
    assert types[first_done + 1 :].count("response.created") == 1  # the second starts after the first ends
    ids = [e.response.id for e in events if e.type == "response.done"]
    assert len(set(ids)) == 2
    assert [e.response.usage.characters for e in events if e.type == "response.done"] == [10, 11]


# --- server_commit mode, cancel, finish ------------------------------------------------------------


async def test_server_commit_segments_automatically_and_finish_closes_the_response(emulator: Emulator) -> None:
    async with session(emulator) as client:
        await client.send(p.InputTextBufferAppend(text="Hello there. How are"))
        events = await client.until("response.audio.delta")  # no commit needed
        await anyio.sleep(0.1)
        assert "response.done" not in emulator.sessions[-1].sent  # the response stays open (§3.6)
        await client.send(p.InputTextBufferAppend(text=" you?"))
        await client.send(p.SessionFinish())
        events += await client.until("session.finished")
    types = cycle(events)
    assert types == [*p.RESPONSE_CYCLE, "session.finished"]
    assert "input_text_buffer.committed" not in types
    done = events[-2]
    assert done.response.usage.characters == len("Hello there. How are you?")


async def test_response_cancel_ends_the_response_as_cancelled(emulator_factory: Any) -> None:
    async with (
        emulator_factory(EmulatorConfig(audio="signal", rtf=1.0, chunk_ms=50)) as emulator,
        session(emulator) as client,
    ):
        await client.send(p.ResponseCancel())  # idle: a no-op
        await client.update(voice="Cherry", mode="commit")
        await client.send(p.InputTextBufferAppend(text="A long sentence that takes seconds to speak in real time."))
        await client.send(p.InputTextBufferCommit())
        events = await client.until("response.audio.delta")
        await client.send(p.ResponseCancel())
        events += await client.until("response.done", timeout=2)
        await client.send(p.SessionFinish())
        assert (await client.recv()).type == "session.finished"
    assert cycle(events)[-4:] == list(p.RESPONSE_CYCLE[-4:])
    assert events[-1].response.status == "cancelled"
    assert len(pcm_of(events)) / 2 / 24000 < 1.0  # stopped well before the ~4 s of speech


async def test_events_after_session_finished_are_rejected(emulator: Emulator) -> None:
    async with session(emulator) as client:
        await client.send(p.SessionFinish())
        assert (await client.recv()).type == "session.finished"
        await client.send(p.InputTextBufferAppend(text="late"))
        assert (await client.recv()).type == "error"


# --- authentication and failures -----------------------------------------------------------------


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer sk-wrong"}, {}, {"Authorization": "Basic sk-emulator"}])
async def test_bad_key_refuses_the_upgrade_with_401_and_a_body(emulator: Emulator, headers: dict[str, str]) -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidStatus) as caught:
        async with connect(f"{emulator.url}?model={FLASH}", additional_headers=headers):
            pass
    elapsed = time.perf_counter() - started
    response = caught.value.response
    body = json.loads(response.body)
    assert response.status_code == 401
    assert body == {"code": "InvalidApiKey", "message": "Invalid API-key provided.", "request_id": body["request_id"]}
    assert response.headers["x-request-id"] == body["request_id"]
    assert elapsed < 1.0
    assert emulator.sessions[-1].status == 401 and emulator.open_sessions == 0


@pytest.mark.parametrize(
    "path", ["", "/", "/api-ws/v1/realtim", "/api/v1/services/aigc/multimodal-generation/generation"]
)
async def test_an_upgrade_on_an_unknown_path_is_a_404_with_a_body(emulator: Emulator, path: str) -> None:
    # Starlette's own answer would be an empty 403, which a client can only take for a refused key.
    base = emulator.url.removesuffix("/api-ws/v1/realtime")
    with pytest.raises(InvalidStatus) as caught:
        await connect(f"{base}{path}?model={FLASH}", additional_headers={"Authorization": "Bearer sk-emulator"})
    response = caught.value.response
    body = json.loads(response.body)
    assert response.status_code == 404
    assert body == {
        "code": "InvalidURL",
        "message": "Invalid URL provided in your request.",
        "request_id": body["request_id"],
    }
    assert response.headers["x-request-id"] == body["request_id"]
    assert emulator.sessions == [] and emulator.open_sessions == 0


async def test_lowercase_bearer_and_workspace_are_accepted(emulator: Emulator) -> None:
    headers = {
        "authorization": "bearer sk-emulator",
        "X-DashScope-WorkSpace": "ws-123",
        "User-Agent": "dashscope/2.0.2",
    }
    async with session(emulator, key=None, **headers):
        pass
    record = emulator.sessions[-1]
    assert (record.status, record.workspace, record.user_agent) == (101, "ws-123", "dashscope/2.0.2")
    assert "authorization" not in record.headers


async def test_any_key_is_accepted_when_none_is_configured(emulator_factory: Any) -> None:
    async with emulator_factory(EmulatorConfig(audio="signal", api_key=None)) as emulator:
        async with session(emulator, key="sk-anything"):
            pass
        with pytest.raises(InvalidStatus):
            await connect(emulator.url)


async def test_unknown_model_gets_session_created_then_a_silent_close(emulator: Emulator) -> None:
    async with connect(
        f"{emulator.url}?model=qwen-nonexistent", additional_headers={"Authorization": "Bearer sk-emulator"}
    ) as ws:
        assert p.parse_server_event(await ws.recv()).type == "session.created"
        with pytest.raises(ConnectionClosed):
            await ws.send(p.dump_event(p.SessionUpdate(session=p.SessionConfig(voice="Cherry"))))
            await ws.recv()
    assert ws.close_code == 1000
    assert "response.audio.delta" not in emulator.sessions[-1].sent


async def test_throttle_closes_1011_with_the_observed_reason(emulator_factory: Any) -> None:
    headers = {"Authorization": "Bearer sk-emulator"}
    async with (
        emulator_factory(EmulatorConfig(audio="signal", throttle=True)) as emulator,
        connect(f"{emulator.url}?model={FLASH}", additional_headers=headers) as ws,
    ):
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert (ws.close_code, ws.close_reason) == (1011, "To many requests. Your requests are being throttled...")


async def test_reject_status_refuses_every_upgrade(emulator_factory: Any) -> None:
    async with emulator_factory(EmulatorConfig(audio="signal", reject_status=429)) as emulator:
        with pytest.raises(InvalidStatus) as caught:
            await connect(f"{emulator.url}?model={FLASH}", additional_headers={"Authorization": "Bearer sk-emulator"})
    assert caught.value.response.status_code == 429
    assert json.loads(caught.value.response.body)["code"] == "Throttling.RateQuota"


async def test_fail_after_chunks_sends_a_server_error_then_closes_1011(emulator_factory: Any) -> None:
    async with (
        emulator_factory(EmulatorConfig(audio="signal", fail_after_chunks=2)) as emulator,
        session(emulator) as client,
    ):
        await client.update(voice="Cherry", mode="commit")
        await client.send(p.InputTextBufferAppend(text="Hello there, how are you?"))
        await client.send(p.InputTextBufferCommit())
        events = await client.until("error")
        with pytest.raises(ConnectionClosed):
            await client.recv()
    assert [e.type for e in events].count("response.audio.delta") == 2
    assert events[-1].error.type == "server_error"
    assert client.ws.close_code == 1011


async def test_drop_after_chunks_aborts_without_a_close_frame(emulator_factory: Any) -> None:
    async with (
        emulator_factory(EmulatorConfig(audio="signal", drop_after_chunks=1)) as emulator,
        session(emulator) as client,
    ):
        await client.update(voice="Cherry", mode="commit")
        await client.send(p.InputTextBufferAppend(text="Hello there, how are you?"))
        await client.send(p.InputTextBufferCommit())
        with pytest.raises(ConnectionClosed):
            await client.until("response.done")
    assert client.ws.close_code == 1006  # no close frame received
    assert emulator.sessions[-1].sent.count("response.audio.delta") == 1


async def test_close_after_finished_closes_with_1000(emulator_factory: Any) -> None:
    config = EmulatorConfig(audio="signal", close_after_finished_ms=50)
    async with emulator_factory(config) as emulator, session(emulator) as client:
        await client.send(p.SessionFinish())
        assert (await client.recv()).type == "session.finished"
        with pytest.raises(ConnectionClosed):
            await client.recv(timeout=2)
    assert client.ws.close_code == 1000
    assert emulator.sessions[-1].closed_by == "server"


# --- pacing, audio sources, the official SDK -------------------------------------------------------


async def first_audio_seconds(emulator: Emulator) -> float:
    async with session(emulator) as client:
        await client.update(voice="Cherry", mode="commit")
        await client.send(p.InputTextBufferAppend(text="Hi."))
        started = time.perf_counter()
        await client.send(p.InputTextBufferCommit())
        await client.until("response.audio.delta")
        return time.perf_counter() - started


async def test_latency_ms_delays_the_first_audio(emulator_factory: Any) -> None:
    async with emulator_factory(SIGNAL) as fast:
        baseline = await first_audio_seconds(fast)
    async with emulator_factory(EmulatorConfig(audio="signal", latency_ms=300)) as slow:
        delayed = await first_audio_seconds(slow)
    assert delayed >= 0.3 and delayed - baseline > 0.2


async def test_rtf_paces_deltas_and_handshake_delay_slows_the_upgrade(emulator_factory: Any) -> None:
    config = EmulatorConfig(audio="signal", rtf=1.0, handshake_delay_ms=200)
    async with emulator_factory(config) as emulator:
        started = time.perf_counter()
        async with session(emulator) as client:
            assert time.perf_counter() - started > 0.19
            await client.update(voice="Cherry", mode="commit")
            await client.send(p.InputTextBufferAppend(text="Hello."))
            await client.send(p.InputTextBufferCommit())
            await client.until("response.audio.delta")
            first = time.perf_counter()
            events = await client.until("response.audio.done")
            spread = time.perf_counter() - first
    seconds = len(pcm_of(events)) / 2 / 24000  # audio after the first 100 ms delta
    assert seconds - 0.15 < spread < seconds + 0.6  # paced like playback, with room for a loaded machine


async def test_auto_audio_produces_speech_or_signal(emulator_factory: Any) -> None:
    async with emulator_factory(EmulatorConfig()) as emulator, session(emulator) as client:
        await client.update(voice="Ethan", mode="commit", sample_rate=16000)
        events = await client.speak("Hello from the emulator.")
    samples = array.array("h", pcm_of(events))
    assert len(samples) > 16000 // 2 and max(samples) > 1000  # half a second or more, not silence


async def test_official_sdk_completes_a_commit_session(emulator: Emulator) -> None:
    import dashscope
    from dashscope.audio.qwen_tts_realtime import QwenTtsRealtime, QwenTtsRealtimeCallback

    events: list[dict[str, Any]] = []
    seen = {name: threading.Event() for name in ("session.created", "response.done", "session.finished")}

    class Callback(QwenTtsRealtimeCallback):
        def on_event(self, message: Any) -> None:
            events.append(message)
            if message["type"] in seen:
                seen[message["type"]].set()

    def run_sdk() -> None:
        saved, dashscope.api_key = dashscope.api_key, str(emulator.config.api_key)
        try:
            tts = QwenTtsRealtime(model=FLASH, callback=Callback(), url=emulator.url)  # reads the global key
        finally:
            dashscope.api_key = saved
        tts.connect()
        try:
            assert seen["session.created"].wait(5)
            tts.update_session(voice="Cherry", mode="commit", language_type="English", sample_rate=16000)
            tts.append_text("Hello from the official SDK.")
            tts.commit()
            assert seen["response.done"].wait(5)
            tts.finish()
            assert seen["session.finished"].wait(5)
        finally:
            tts.close()
            tts.thread.join(5)

    await anyio.to_thread.run_sync(run_sdk)
    types = [e["type"] for e in events]
    assert types[:2] == ["session.created", "session.updated"]
    assert events[1]["session"]["language_type"] == "english"
    audio = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.audio.delta")
    assert len(audio) / 2 / 16000 > 1.0
    assert types[-2:] == ["response.done", "session.finished"]
    record = emulator.sessions[-1]
    assert record.user_agent and record.user_agent.startswith("dashscope/")
    assert [e.type for e in record.events][:3] == [
        "session.update",
        "input_text_buffer.append",
        "input_text_buffer.commit",
    ]


# --- the sans-I/O core, the signal, the configuration -------------------------------------------------


def test_billed_characters_count_ideographs_twice() -> None:
    assert billed_characters("请描述图片中的颜色和形状。") == 25  # the observed usage.characters (§3.9)
    assert billed_characters("Hi, 世界!") == 4 + 2 * 2 + 1


def test_core_server_commit_segmentation_rules() -> None:
    core = EmulatorSession(EmulatorConfig(server_commit_min_chars=20), FLASH)
    core.opening()
    assert core.receive(p.InputTextBufferAppend(text="Pi is 3.14 and")) == []  # no sentence end yet
    start = core.receive(p.InputTextBufferAppend(text=" more. Next"))
    assert len(start) == 1 and isinstance(start[0], StartResponse) and not start[0].final
    assert start[0].text == "Pi is 3.14 and more."
    more = core.receive(p.InputTextBufferAppend(text=" words without any end at all"))
    assert isinstance(more[0], ContinueResponse) and more[0].text == " Next words without any end at "
    cancel = core.receive(p.ResponseCancel())
    assert cancel == [CancelResponse(start[0].response_id)]
    assert core.receive(p.ResponseCancel()) == []  # already cancelled
    finish = core.receive(p.SessionFinish())
    assert isinstance(finish[0], StartResponse) and finish[0].final and finish[0].text == "all"


def test_core_finish_waits_for_responses_before_session_finished() -> None:
    core = EmulatorSession(EmulatorConfig(), FLASH)
    core.receive(p.SessionUpdate(session=p.SessionConfig(voice="Cherry", mode="commit")))
    core.receive(p.InputTextBufferAppend(text="你好"))
    committed, start = core.receive(p.InputTextBufferCommit())
    assert isinstance(committed, p.InputTextBufferCommitted) and committed.item_id == ""
    assert isinstance(start, StartResponse)
    assert core.receive(p.SessionFinish()) == []  # the response is still running
    delta = core.audio_delta(start, b"\x00\x01" * 2400)
    assert delta.response_id == start.response_id
    done = core.finish_response(start)
    assert [getattr(e, "type", None) for e in done] == [*p.RESPONSE_CYCLE[-4:], "session.finished"]
    assert isinstance(done[3], p.ResponseDone) and done[3].response.usage is not None
    usage = done[3].response.usage
    assert (usage.characters, usage.output_tokens) == (4, 2)  # 0.1 s at 12.5 tokens/s, rounded up


def core_with(model: str = FLASH, **knobs: Any) -> EmulatorSession:
    core = EmulatorSession(EmulatorConfig(**knobs), model)
    core.opening()
    return core


def test_core_knobs_for_the_open_questions() -> None:
    short = core_with(error_shape="short").receive(p.SessionUpdate(session=p.SessionConfig(voice="Nobody")))
    assert isinstance(short[0], p.ErrorEvent) and (short[0].error.type, short[0].error.param) == (None, None)

    echo = core_with(echo_extra_fields=True).receive(
        p.SessionUpdate(session=p.SessionConfig.model_validate({"voice": "Cherry", "volume": 80, "enable_tn": True}))
    )
    assert isinstance(echo[0], p.SessionUpdated) and echo[0].session.volume == 80
    assert (echo[0].session.model_extra or {})["enable_tn"] is True

    strict = core_with(commit_while_responding="reject")
    strict.receive(p.SessionUpdate(session=p.SessionConfig(voice="Cherry", mode="commit")))
    for text in ("One.", "Two."):
        strict.receive(p.InputTextBufferAppend(text=text))
    assert isinstance(strict.receive(p.InputTextBufferCommit())[1], StartResponse)
    strict.receive(p.InputTextBufferAppend(text="Three."))
    assert isinstance(strict.receive(p.InputTextBufferCommit())[0], p.ErrorEvent)  # one response at a time

    auto = core_with(emit_committed_on_auto=True).receive(p.InputTextBufferAppend(text="Hi. "))
    assert [type(a) for a in auto] == [p.InputTextBufferCommitted, StartResponse]

    unknown = core_with(model="qwen-nonexistent", unknown_model="error")
    assert [type(a).__name__ for a in unknown.opening()] == ["ErrorEvent", "CloseConnection"]


def test_core_wav_output_starts_each_response_with_a_header() -> None:
    core = core_with()
    core.receive(p.SessionUpdate(session=p.SessionConfig(voice="Cherry", mode="commit", response_format="wav")))
    core.receive(p.InputTextBufferAppend(text="Hi"))
    start = core.receive(p.InputTextBufferCommit())[1]
    assert isinstance(start, StartResponse)
    first = base64.b64decode(core.audio_delta(start, b"\x00\x00" * 10).delta)
    second = base64.b64decode(core.audio_delta(start, b"\x00\x00" * 10).delta)
    assert first[:4] == b"RIFF" and first[8:12] == b"WAVE" and len(first) == 44 + 20
    assert len(second) == 20


def test_rechunker_emits_whole_samples_of_the_chunk_size() -> None:
    chunker = Rechunker(24000, 100)
    assert chunker.chunk_bytes == 4800
    chunks = chunker.feed(b"\x01" * 5000) + chunker.feed(b"\x02" * 5000) + chunker.flush()
    assert [len(c) for c in chunks] == [4800, 4800, 400]


def test_signal_is_deterministic_speech_like_and_scales_with_text() -> None:
    signal = SpeechSignal("Hello, world.", 16000, female=False)
    pcm = b"".join(signal.blocks(160))
    assert pcm == b"".join(SpeechSignal("Hello, world.", 16000, female=False).blocks(1000))
    samples = array.array("h", pcm)
    assert len(samples) == signal.total_samples
    # Loudness moves at a syllable rate: 20 ms frames range from near-silent to loud.
    frames = [max(abs(s) for s in samples[i : i + 320]) for i in range(0, len(samples) - 320, 320)]
    assert max(frames) > 8000 and min(frames) < 500 and len(set(frames)) > len(frames) // 2
    assert SpeechSignal("你好世界", 16000).duration_ms > SpeechSignal("abcd", 16000).duration_ms * 2
    assert SpeechSignal("...", 8000).total_samples > 0


def test_config_rejects_bad_values() -> None:
    for bad in ({"latency_ms": -1}, {"chunk_ms": 0}, {"audio": "mp3"}, {"reject_status": 200}, {"api_key": " "}):
        with pytest.raises(ConfigurationError):
            EmulatorConfig(**bad)


async def test_a_busy_port_is_a_configuration_error(emulator: Emulator) -> None:
    with pytest.raises(ConfigurationError):
        async with serve_emulator(SIGNAL, port=emulator.port):
            pass


# --- helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def emulator_factory() -> Any:
    """``async with emulator_factory(config) as emulator``: an emulator with a custom configuration."""
    return serve_emulator


async def wait_closed(emulator: Emulator) -> None:
    with anyio.fail_after(2):
        while emulator.open_sessions:
            await anyio.sleep(0.01)

"""The non-realtime HTTP engine (SSE) and the emulator's HTTP API, over loopback.

The emulator serves the HTTP API on the same port as the realtime WebSocket. Error frames and broken
streams that the emulator never produces come from small Starlette apps reached through the
engine's ``transport=`` seam (httpx's ASGI transport): real HTTP responses, no patched classes.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time
import wave
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from alicloud_tts_realtime import (
    AudioChunk,
    AuthenticationError,
    ConfigurationError,
    ConnectionFailedError,
    InvalidRequestError,
    InvalidStateError,
    NoAudioError,
    ProtocolViolationError,
    RateLimitError,
    ServiceError,
    Settings,
    SynthesisOutcome,
    build_request,
    catalog,
)
from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig, serve_emulator
from alicloud_tts_realtime.engines import select_engine
from alicloud_tts_realtime.engines.http_sse import GENERATION_PATH, HttpEngine, SseParser
from alicloud_tts_realtime.service import RetryOptions, synthesize

pytestmark = pytest.mark.anyio

KEY = "sk-emulator"
TEXT = "The quick brown fox jumps over the lazy dog."


def settings_for(base_url: str, key: str = KEY, idle_timeout: float = 3) -> Settings:
    return Settings(api_key=SecretStr(key), http_base_url=base_url, connect_timeout=2, idle_timeout=idle_timeout)


async def collect(engine: HttpEngine, **fields: Any) -> tuple[list[AudioChunk], SynthesisOutcome]:
    chunks: list[AudioChunk] = []
    outcome = None
    async for item in engine.stream(build_request(**({"text": TEXT, "voice": "Cherry"} | fields))):
        if isinstance(item, AudioChunk):
            chunks.append(item)
        else:
            outcome = item
    assert outcome is not None
    return chunks, outcome


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the SSE parser -----------------------------------------------------------------------------


def test_sse_parser_reads_dashscope_frames_byte_by_byte() -> None:
    stream = (
        b'id:1\nevent:result\n:HTTP_STATUS/200\ndata:{"a":1}\n\n'
        b'id:2\r\nevent:error\r\n:HTTP_STATUS/400\r\ndata:{"code":"X"}\r\n\r\n'
        b'id:3\nstatus: 429\ndata: {"b":\ndata:2}'  # two data lines, and no blank line at the end
    )
    parser, frames = SseParser(), []
    for i in range(len(stream)):
        frames += parser.feed(stream[i : i + 1])
    frames += parser.close()
    assert [(f.id, f.event, f.status, f.data) for f in frames] == [
        ("1", "result", 200, '{"a":1}'),
        ("2", "error", 400, '{"code":"X"}'),
        ("3", "", 429, '{"b":\n2}'),
    ]
    assert parser.close() == []


def test_sse_parser_refuses_bytes_that_are_not_utf8() -> None:
    with pytest.raises(ProtocolViolationError):
        SseParser().feed(b"data:\xff\n\n")


@pytest.mark.parametrize(
    ("model", "instruction", "expected"),
    [
        (None, None, "qwen3-tts-flash"),
        (None, "calm", "qwen3-tts-instruct-flash"),
        ("qwen3-tts-flash-realtime-2025-09-18", None, "qwen3-tts-flash"),
        ("qwen3-tts-instruct-flash-realtime-2026-01-22", None, "qwen3-tts-instruct-flash"),  # dates differ
        ("qwen3-tts-flash-realtime-2099-01-01", None, "qwen3-tts-flash"),  # a snapshot newer than the catalog
        ("qwen3-tts-flash-2025-11-27", None, "qwen3-tts-flash-2025-11-27"),  # an HTTP model stays itself
    ],
)
def test_realtime_models_map_to_their_http_counterparts(
    model: str | None, instruction: str | None, expected: str
) -> None:
    assert catalog.http_model_for(model, instruction).id == expected


# --- against the emulator -----------------------------------------------------------------------


async def test_streams_pcm_frames_and_reports_the_final_frame(emulator: Emulator) -> None:
    async with HttpEngine(settings_for(emulator.http_base_url)) as engine:
        chunks, outcome = await collect(engine)
    assert len(chunks) > 5 and all(c.sample_rate == 24000 and len(c.pcm) % 2 == 0 for c in chunks)
    assert sum(c.duration_ms for c in chunks) > 1500
    assert outcome.finish_reason == "stop"
    assert outcome.model == "qwen3-tts-flash"  # the HTTP counterpart of the default realtime model
    assert outcome.characters == len(TEXT)
    assert outcome.session_id  # the request id


async def test_an_instruction_selects_the_instruct_model_and_travels_in_parameters(emulator: Emulator) -> None:
    engine = HttpEngine(settings_for(emulator.http_base_url))
    request = build_request(text=TEXT, voice="Cherry", instruction="calm and slow", language_type="english")
    assert engine.body(request) == {
        "model": "qwen3-tts-instruct-flash",
        "input": {"text": TEXT, "voice": "Cherry", "language_type": "English"},
        "parameters": {"instructions": "calm and slow"},
    }
    async with engine:
        _, outcome = await collect(engine, instruction="calm and slow")
    assert outcome.model == "qwen3-tts-instruct-flash"


async def test_the_same_text_gives_the_same_audio_as_the_downloadable_file(emulator: Emulator) -> None:
    async with HttpEngine(settings_for(emulator.http_base_url)) as engine:
        chunks, _ = await collect(engine)
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            emulator.http_base_url + GENERATION_PATH,
            json={"model": "qwen3-tts-flash", "input": {"text": TEXT, "voice": "Cherry"}},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        audio = reply.json()["output"]["audio"]
        wav = (await client.get(audio["url"])).content
    with wave.open(io.BytesIO(wav)) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (24000, 1, 2)
        assert reader.readframes(reader.getnframes()) == b"".join(c.pcm for c in chunks)


async def test_audio_is_yielded_as_it_arrives() -> None:
    # rtf=1 paces the stream in real time: the first frame must come long before the last.
    config = EmulatorConfig(audio="signal", rtf=1.0, chunk_ms=100)
    async with serve_emulator(config) as emulator, HttpEngine(settings_for(emulator.http_base_url)) as engine:
        started = time.perf_counter()
        arrivals = [
            time.perf_counter() - started
            async for _ in engine.stream(build_request(text="One two three four five.", voice="Cherry"))
        ]
    assert arrivals[0] < 0.5 and arrivals[-1] > 1.0, arrivals


async def test_a_bad_key_is_an_authentication_error_without_the_key(emulator: Emulator) -> None:
    async with HttpEngine(settings_for(emulator.http_base_url, key="sk-not-the-right-one")) as engine:
        with pytest.raises(AuthenticationError) as caught:
            await collect(engine)
    assert caught.value.status == 401 and caught.value.code == "InvalidApiKey" and not caught.value.retryable
    assert "sk-not-the-right-one" not in str(caught.value)


async def test_an_unreachable_api_is_a_retryable_connection_error() -> None:
    async with HttpEngine(settings_for(f"http://127.0.0.1:{closed_port()}/api/v1", key="sk-secret-1")) as engine:
        with pytest.raises(ConnectionFailedError) as caught:
            await collect(engine)
    assert caught.value.retryable and "sk-secret-1" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_local_checks_fail_before_any_request() -> None:
    # The base URL is unreachable: only a local refusal can explain these errors.
    engine = HttpEngine(settings_for(f"http://127.0.0.1:{closed_port()}/api/v1"))
    with pytest.raises(InvalidRequestError, match="24000"):
        await collect(engine, sample_rate=16000)
    with pytest.raises(InvalidRequestError, match="Dylan"):  # a flash voice the instruct model lacks
        await collect(HttpEngine(engine._settings, model="qwen3-tts-instruct-flash"), voice="Dylan")
    with pytest.raises(InvalidRequestError, match="realtime"):
        HttpEngine(engine._settings, model="qwen3-tts-flash-realtime")
    with pytest.raises(InvalidRequestError, match="no HTTP counterpart"):
        await collect(engine, model="qwen-tts-realtime")
    await engine.aclose()
    with pytest.raises(InvalidStateError):
        await collect(engine)


async def test_closing_the_stream_early_stops_the_request(emulator: Emulator) -> None:
    async with HttpEngine(settings_for(emulator.http_base_url)) as engine:
        stream = engine.stream(build_request(text=TEXT * 5, voice="Cherry"))
        first = await stream.__anext__()
        assert isinstance(first, AudioChunk)
        await stream.aclose()
        _, outcome = await collect(engine)  # the engine is still usable
    assert outcome.finish_reason == "stop"


async def test_service_and_select_engine_use_it(emulator: Emulator) -> None:
    engine, reason = select_engine(settings_for(emulator.http_base_url), "http")
    assert isinstance(engine, HttpEngine) and reason == "http: requested"
    async with engine:
        response = await synthesize(build_request(text=TEXT, voice="Ethan"), engine)
    assert response.engine == "http" and response.model == "qwen3-tts-flash" and response.duration_ms > 1500
    with pytest.raises(ConfigurationError):
        select_engine(Settings(), "http")


# --- the emulator's HTTP API, raw --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"model": "qwen3-tts-flash-realtime", "input": {"text": "hi", "voice": "Cherry"}},
            "does not support http call",
        ),
        ({"model": "qwen3-tts-nope", "input": {"text": "hi", "voice": "Cherry"}}, "Model not exist."),
        ({"model": "qwen3-tts-flash", "input": {"text": "hi", "voice": "Nobody"}}, "Invalid voice specified"),
        ({"model": "qwen3-tts-flash", "input": {"text": "", "voice": "Cherry"}}, "input.text"),
    ],
)
async def test_emulator_refuses_bad_requests_with_400(emulator: Emulator, body: dict[str, Any], message: str) -> None:
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            emulator.http_base_url + GENERATION_PATH, json=body, headers={"Authorization": f"Bearer {KEY}"}
        )
    assert reply.status_code == 400, reply.text
    data = reply.json()
    assert data["code"] == "InvalidParameter" and message in data["message"]
    assert data["request_id"] == reply.headers["x-request-id"]


async def test_emulator_refuses_a_bad_key_with_401(emulator: Emulator) -> None:
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            emulator.http_base_url + GENERATION_PATH,
            json={"model": "qwen3-tts-flash", "input": {"text": "hi", "voice": "Cherry"}},
            headers={"Authorization": "Bearer sk-wrong", "X-DashScope-SSE": "enable"},
        )
    assert reply.status_code == 401 and reply.json()["code"] == "InvalidApiKey"


async def test_emulator_sse_frames_have_the_real_shape(emulator: Emulator) -> None:
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            emulator.http_base_url + GENERATION_PATH,
            json={"model": "qwen3-tts-flash", "input": {"text": "你好", "voice": "Cherry"}, "parameters": {}},
            headers={"Authorization": f"bearer {KEY}", "X-DashScope-SSE": "enable"},
        )
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    blocks = reply.text.strip("\n").split("\n\n")
    first, last = blocks[0].split("\n"), blocks[-1].split("\n")
    assert first[:3] == ["id:1", "event:result", ":HTTP_STATUS/200"] and first[3].startswith("data:{")
    middle = json.loads(first[3].removeprefix("data:"))
    assert middle["output"]["finish_reason"] == "null" and middle["usage"] == {"characters": 4}
    assert len(base64.b64decode(middle["output"]["audio"]["data"])) % 2 == 0
    final = json.loads(last[3].removeprefix("data:"))
    assert final["output"]["finish_reason"] == "stop" and final["output"]["audio"]["data"] == ""
    assert final["output"]["audio"]["url"].endswith(f"?Expires={final['output']['audio']['expires_at']}")
    assert final["request_id"] == middle["request_id"] == reply.headers["x-request-id"]


async def test_emulator_sends_a_bad_voice_as_an_sse_error_frame(emulator: Emulator) -> None:
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            emulator.http_base_url + GENERATION_PATH,
            json={"model": "qwen3-tts-instruct-flash", "input": {"text": "hi", "voice": "Dylan"}},
            headers={"Authorization": f"Bearer {KEY}", "X-DashScope-SSE": "enable"},
        )
    lines = reply.text.strip("\n").split("\n")
    assert reply.status_code == 200 and lines[1:3] == ["event:error", ":HTTP_STATUS/400"]
    assert json.loads(lines[3].removeprefix("data:"))["message"] == "Invalid voice specified"


# --- error frames and broken streams from canned servers ----------------------------------------


def canned(status: int, body: bytes, content_type: str = "text/event-stream") -> httpx.ASGITransport:
    """A transport to an app answering every generation request with ``body``."""

    async def endpoint(request: Request) -> Response:
        assert request.headers["x-dashscope-sse"] == "enable"

        async def chunks() -> AsyncIterator[bytes]:
            yield body

        return StreamingResponse(chunks(), status_code=status, media_type=content_type)

    return httpx.ASGITransport(app=Starlette(routes=[Route("/api/v1" + GENERATION_PATH, endpoint, methods=["POST"])]))


def frame(payload: dict[str, Any], *, event: str = "result", status: int = 200, n: int = 1) -> bytes:
    return f"id:{n}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:{json.dumps(payload)}\n\n".encode()


def audio_frame(pcm: bytes, n: int = 1) -> bytes:
    data = base64.b64encode(pcm).decode()
    return frame({"output": {"finish_reason": "null", "audio": {"data": data}}, "request_id": "r1"}, n=n)


STOP = frame({"output": {"finish_reason": "stop", "audio": {"data": "", "url": "u"}}, "usage": {"characters": 3}}, n=9)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "error", "fields"),
    [
        (
            200,
            frame(
                {"code": "InvalidParameter", "message": "Invalid voice specified", "request_id": "x"},
                event="error",
                status=400,
            ),
            "text/event-stream",
            ServiceError,
            {"status": 400, "code": "InvalidParameter", "request_id": "x", "retryable": False},
        ),
        (
            200,
            frame({"code": "InvalidApiKey", "message": "Invalid API-key provided."}, event="error"),
            "text/event-stream",
            AuthenticationError,
            {"code": "InvalidApiKey"},
        ),
        (
            200,
            frame({"code": "Throttling.RateQuota", "message": "slow down"}, event="error"),
            "text/event-stream",
            RateLimitError,
            {"retryable": True},
        ),
        (
            200,
            audio_frame(b"\x00\x00" * 10)
            + frame({"code": "InternalError", "message": "boom"}, event="error", status=500, n=2),
            "text/event-stream",
            ServiceError,
            {"status": 500, "retryable": True},
        ),
        (
            429,
            b'{"code":"Throttling","message":"Requests rate limit exceeded"}',
            "application/json",
            RateLimitError,
            {"status": 429},
        ),
        (500, b'{"code":"InternalError","message":"oops"}', "application/json", ServiceError, {"retryable": True}),
        (
            400,
            b'{"code":"InvalidParameter","message":"current user api does not support http call"}',
            "application/json",
            ServiceError,
            {"status": 400},
        ),
        (200, b'{"code":"InvalidParameter","message":"Model not exist."}', "application/json", ServiceError, {}),
        (200, b"<html>gateway</html>", "text/html", ProtocolViolationError, {}),
        (200, audio_frame(b"\x00\x00" * 10), "text/event-stream", ConnectionFailedError, {}),  # no final frame
        (200, STOP, "text/event-stream", NoAudioError, {}),
        (200, audio_frame(b"\x00\x00\x00") + STOP, "text/event-stream", ProtocolViolationError, {}),  # odd bytes
        (200, b"data:not json\n\n", "text/event-stream", ProtocolViolationError, {}),
    ],
)
async def test_error_replies_become_typed_errors(
    status: int, body: bytes, content_type: str, error: type[Exception], fields: dict[str, Any]
) -> None:
    async with HttpEngine(settings_for("http://canned/api/v1"), transport=canned(status, body, content_type)) as engine:
        with pytest.raises(error) as caught:
            await collect(engine)
    for name, value in fields.items():
        assert getattr(caught.value, name) == value, (name, caught.value)


async def test_a_realtime_only_refusal_says_which_model_to_use() -> None:
    body = b'{"code":"InvalidParameter","message":"current user api does not support http call"}'
    transport = canned(400, body, "application/json")
    async with HttpEngine(settings_for("http://canned/api/v1"), transport=transport) as engine:
        with pytest.raises(ServiceError, match=catalog.DEFAULT_HTTP_MODEL):
            await collect(engine)


async def test_audio_frames_then_stop_complete_a_synthesis() -> None:
    body = audio_frame(b"\x01\x00" * 240) + audio_frame(b"\x02\x00" * 240, n=2) + STOP
    async with HttpEngine(settings_for("http://canned/api/v1"), transport=canned(200, body)) as engine:
        chunks, outcome = await collect(engine)
    assert [len(c.pcm) for c in chunks] == [480, 480]
    assert (outcome.finish_reason, outcome.characters, outcome.session_id) == ("stop", 3, "r1")


async def test_a_slow_stream_is_not_a_timeout_while_frames_flow() -> None:
    # The idle timeout is per read, not per synthesis: ~2 s of paced audio with a 1 s idle timeout.
    config = EmulatorConfig(audio="signal", rtf=1.0, latency_ms=200)
    async with (
        serve_emulator(config) as emulator,
        HttpEngine(settings_for(emulator.http_base_url, idle_timeout=1)) as engine,
    ):
        with anyio.fail_after(10):
            response = await synthesize(
                build_request(text="One two three four five.", voice="Cherry"),
                engine,
                retry=RetryOptions(max_retries=0),
            )
    assert response.duration_ms > 1500 and response.first_audio_ms is not None and response.first_audio_ms >= 200

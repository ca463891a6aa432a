"""The MCP server through the SDK's in-memory client: tools, schemas, audio, progress, cancellation, errors.

The server runs against the emulator (realtime engine) or the offline engine, never a mock: each
test builds it with :func:`build_server` and talks to it with ``mcp.Client(server)``. The default
in-memory mode dispatches directly (no JSON-RPC, no progress token); ``mode="legacy"`` goes
through JSON-RPC framing, where progress notifications carry a token and ``_meta``.
"""

from __future__ import annotations

import base64
import os
import time
import wave
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import CallToolResult, ProgressNotification, ResourceLink, TextContent

from alicloud_tts_realtime import catalog
from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig
from alicloud_tts_realtime.errors import ConfigurationError
from alicloud_tts_realtime.mcp_server import (
    AUDIO_META_KEY,
    ServerOptions,
    ToolName,
    build_server,
)
from alicloud_tts_realtime.output import user_data_dir
from alicloud_tts_realtime.service import RetryOptions
from alicloud_tts_realtime.settings import Settings, load_settings
from speech_features import assert_speech_like

pytestmark = pytest.mark.anyio

SENTENCE = "Hello! This is a short test of the speech server."
NO_RETRY = RetryOptions(max_retries=0)


def make_settings(tmp_path: Path, emulator: Emulator | None = None, *, key: str | None = None) -> Settings:
    environ = {"OUTPUT_DIR": str(tmp_path / "out")}
    if emulator is not None:
        environ["DASHSCOPE_API_KEY"] = key or emulator.config.api_key or "sk-any"
        environ["DASHSCOPE_REALTIME_URL"] = emulator.url
    return load_settings(environ, home=tmp_path)


def wav_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.wav"))


def read_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.readframes(wav.getnframes()), wav.getframerate()


def text_of(result: CallToolResult) -> str:
    first = result.content[0]
    assert isinstance(first, TextContent)
    return first.text


def assert_error(result: CallToolResult, *fragments: str) -> str:
    """An isError result with one clear line: no traceback, no pydantic dump."""
    assert result.is_error, result
    message = text_of(result)
    assert "\n" not in message and "Traceback" not in message and "errors.pydantic.dev" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


async def wait_for(predicate: Any, timeout: float = 2.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


# --- tools/list -------------------------------------------------------------------------------


async def test_lists_tools_with_described_schemas(tmp_path: Path) -> None:
    server = build_server(make_settings(tmp_path), ServerOptions(max_text_chars=1234))
    async with Client(server) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == {ToolName.TTS_REALTIME.value, ToolName.TTS_VOICES.value, ToolName.TTS_STOP.value}
    speak = tools["tts_realtime"]
    schema = speak.input_schema
    props = schema["properties"]
    assert set(schema["required"]) == {"text", "voice"}
    assert {
        "text",
        "voice",
        "instruction",
        "sample_rate",
        "model",
        "output",
        "filename",
        "play",
        "stream_chunks",
    } <= set(props)
    assert all(prop.get("description") for prop in props.values())
    assert "Cherry" in props["voice"]["description"]  # voices to try
    assert "instruct" in props["instruction"]["description"]  # which models take it
    assert props["sample_rate"]["enum"] == list(catalog.SAMPLE_RATES) and props["sample_rate"]["default"] == 24000
    assert props["output"]["enum"] == ["file", "chunks", "both"] and props["output"]["default"] == "file"
    assert props["text"]["maxLength"] == 1234 and props["text"]["minLength"] == 1
    assert AUDIO_META_KEY in props["stream_chunks"]["description"]

    out = speak.output_schema
    assert out is not None
    for name in ("file_path", "duration_ms", "sample_rate", "finish_reason", "voice", "model", "engine"):
        assert name in out["properties"] and out["properties"][name].get("description"), name
    assert {"first_audio_ms", "output_dir_fallback", "playback", "audio_base64_pcm_chunks"} <= set(out["properties"])

    annotations = speak.annotations
    assert annotations is not None and annotations.title
    assert annotations.read_only_hint is False and annotations.open_world_hint is True
    assert annotations.destructive_hint is True  # a given filename replaces an existing file
    assert speak.description and len(speak.description) < 400

    voices = tools["tts_voices"]
    assert voices.annotations is not None and voices.annotations.read_only_hint is True
    assert voices.output_schema is not None and "models" in voices.output_schema["properties"]


async def test_dotted_alias_is_callable_but_listed_only_on_request(tmp_path: Path) -> None:
    async with Client(build_server(make_settings(tmp_path))) as client:
        assert "tts.realtime" not in {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("tts.realtime", {"text": "Hi.", "voice": "Cherry"})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None and Path(result.structured_content["file_path"]).is_file()

    async with Client(build_server(make_settings(tmp_path), ServerOptions(list_dotted_alias=True))) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert names == {"tts_realtime", "tts.realtime", "tts_voices", "tts_stop"}


# --- audio ------------------------------------------------------------------------------------


async def test_offline_call_returns_a_playable_wav_path(tmp_path: Path) -> None:
    """The fresh-machine case: no key, only text and voice, a WAV path back."""
    async with Client(build_server(make_settings(tmp_path))) as client:
        result = await client.call_tool("tts_realtime", {"text": SENTENCE, "voice": "Cherry"})

    assert not result.is_error, text_of(result)
    data = result.structured_content
    assert data is not None
    assert data["engine"] == "offline" and data["finish_reason"] == "stop" and data["voice"] == "Cherry"
    assert "no DashScope API key" in data["engine_reason"]
    assert data["audio_base64_pcm_chunks"] == []
    path = Path(data["file_path"])
    assert path.is_absolute() and path.parent == Path(data["output_dir"]) and path.is_relative_to(tmp_path / "out")
    pcm, rate = read_wav(path)
    assert rate == data["sample_rate"] == 24000
    features = assert_speech_like(pcm, rate)
    assert 1.0 < features.duration_s < 8.0
    assert abs(features.duration_s * 1000 - data["duration_ms"]) < 5

    summary = text_of(result)
    assert "\n" not in summary and str(path) in summary and len(summary) < 400
    link = result.content[1]
    assert isinstance(link, ResourceLink)
    assert link.uri == path.as_uri() and link.mime_type == "audio/wav" and link.size == path.stat().st_size


async def test_realtime_call_against_the_emulator_returns_chunks(tmp_path: Path, emulator: Emulator) -> None:
    async with Client(build_server(make_settings(tmp_path, emulator))) as client:
        result = await client.call_tool(
            "tts_realtime", {"text": SENTENCE, "voice": "Ethan", "sample_rate": 16000, "output": "chunks"}
        )

    assert not result.is_error, text_of(result)
    data = result.structured_content
    assert data is not None
    assert data["engine"] == "realtime" and data["model"] == catalog.DEFAULT_MODEL and data["session_id"]
    assert data["file_path"] is None and wav_files(tmp_path) == []
    pcm = b"".join(base64.b64decode(chunk) for chunk in data["audio_base64_pcm_chunks"])
    assert data["sample_rate"] == 16000
    features = assert_speech_like(pcm, 16000)
    assert 1.0 < features.duration_s < 8.0
    assert len(emulator.sessions) == 1 and emulator.sessions[0].model == catalog.DEFAULT_MODEL
    assert emulator.open_sessions == 0


async def test_both_saves_the_file_and_returns_the_same_audio(tmp_path: Path, emulator: Emulator) -> None:
    async with Client(build_server(make_settings(tmp_path, emulator))) as client:
        result = await client.call_tool("tts_realtime", {"text": "Both ways.", "voice": "Cherry", "output": "both"})
    data = result.structured_content
    assert data is not None and not result.is_error
    pcm, rate = read_wav(Path(data["file_path"]))
    assert rate == 24000
    assert pcm == b"".join(base64.b64decode(chunk) for chunk in data["audio_base64_pcm_chunks"])


# --- progress and streaming -------------------------------------------------------------------


async def test_progress_reports_milliseconds_of_audio(tmp_path: Path, emulator: Emulator) -> None:
    updates: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, message))

    async with Client(build_server(make_settings(tmp_path, emulator))) as client:
        result = await client.call_tool(
            "tts_realtime", {"text": SENTENCE, "voice": "Cherry"}, progress_callback=on_progress
        )
    data = result.structured_content
    assert data is not None and not result.is_error
    progress = [value for value, _ in updates]
    assert len(progress) >= 5 and progress == sorted(progress) and len(set(progress)) == len(progress)
    assert abs(progress[-1] - data["duration_ms"]) <= 1
    assert all(message and "first audio after" in message for _, message in updates)


async def test_streamed_chunks_reassemble_to_the_result(tmp_path: Path, emulator: Emulator) -> None:
    """With stream_chunks, each progress notification's _meta carries the chunk (JSON-RPC framing)."""
    notifications: list[ProgressNotification] = []

    async def on_message(message: object) -> None:
        if isinstance(message, ProgressNotification):
            notifications.append(message)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        pass

    async with Client(
        build_server(make_settings(tmp_path, emulator)), mode="legacy", message_handler=on_message
    ) as client:
        result = await client.call_tool(
            "tts_realtime",
            {"text": SENTENCE, "voice": "Cherry", "output": "both", "stream_chunks": True, "sample_rate": 48000},
            progress_callback=on_progress,
        )
    data = result.structured_content
    assert data is not None and not result.is_error
    chunks = [n.params.meta[AUDIO_META_KEY] for n in notifications if n.params.meta]
    assert len(chunks) == len(notifications) == len(data["audio_base64_pcm_chunks"]) > 3
    assert [c["seq"] for c in chunks] == list(range(1, len(chunks) + 1))
    assert {c["sample_rate"] for c in chunks} == {48000} and {c["format"] for c in chunks} == {"pcm_s16le"}
    streamed = b"".join(base64.b64decode(c["pcm_base64"]) for c in chunks)
    assert streamed == b"".join(base64.b64decode(c) for c in data["audio_base64_pcm_chunks"])
    assert streamed == read_wav(Path(data["file_path"]))[0]
    assert chunks[1]["offset_ms"] == pytest.approx(chunks[0]["duration_ms"], abs=0.1)


# --- cancellation, deadline, queue ------------------------------------------------------------


@pytest.mark.parametrize(("mode", "engine"), [("auto", "realtime"), ("legacy", "realtime"), ("auto", "sdk")])
@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", rtf=1.0)])
async def test_cancellation_closes_the_upstream_session(
    tmp_path: Path, emulator: Emulator, mode: str, engine: str
) -> None:
    first_progress = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        first_progress.set()

    server = build_server(make_settings(tmp_path, emulator), ServerOptions(engine=engine))
    async with Client(server, mode=mode) as client:
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await client.call_tool(
                    "tts_realtime", {"text": SENTENCE * 3, "voice": "Cherry"}, progress_callback=on_progress
                )
                pytest.fail("the call should have been cancelled")

            tg.start_soon(call)
            with anyio.fail_after(5):
                await first_progress.wait()
            assert emulator.open_sessions == 1
            cancelled_at = time.perf_counter()
            tg.cancel_scope.cancel()
        await wait_for(lambda: emulator.open_sessions == 0)
        closed_after = time.perf_counter() - cancelled_at
    assert closed_after < 1.0
    assert emulator.sessions[0].closed_by == "client" and "response.done" not in emulator.sessions[0].sent
    assert wav_files(tmp_path) == [] and not (tmp_path / "out").exists()  # no file, no empty folder


@pytest.mark.parametrize("engine", ["realtime", "sdk"])
@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", rtf=1.0)])
async def test_deadline_stops_the_synthesis(tmp_path: Path, emulator: Emulator, engine: str) -> None:
    options = ServerOptions(deadline_seconds=0.6, seconds_per_char=0, engine=engine)
    async with Client(build_server(make_settings(tmp_path, emulator), options)) as client:
        result = await client.call_tool("tts_realtime", {"text": SENTENCE * 2, "voice": "Cherry"})
    assert_error(result, "0.6 s", "shorter text")
    await wait_for(lambda: emulator.open_sessions == 0)
    assert wav_files(tmp_path) == [] and not (tmp_path / "out").exists()  # no file, no empty folder


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", handshake_delay_ms=3000)])
async def test_deadline_before_any_audio_blames_the_service_not_the_text(tmp_path: Path, emulator: Emulator) -> None:
    options = ServerOptions(deadline_seconds=0.5, seconds_per_char=0, engine="realtime")
    async with Client(build_server(make_settings(tmp_path, emulator), options)) as client:
        result = await client.call_tool("tts_realtime", {"text": "Hi.", "voice": "Cherry"})
    assert_error(result, "sent no audio within the server's 0.5 s limit", "try again")
    assert wav_files(tmp_path) == [] and not (tmp_path / "out").exists()  # no file, no empty folder


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", latency_ms=3000)])
async def test_a_stall_fails_the_call_and_says_so(tmp_path: Path, emulator: Emulator) -> None:
    options = ServerOptions(stall_seconds=0.5, engine="realtime")
    async with Client(build_server(make_settings(tmp_path, emulator), options)) as client:
        started = time.perf_counter()
        result = await client.call_tool("tts_realtime", {"text": "Hi.", "voice": "Cherry"})
    assert_error(result, "stalled", "no audio for 0.5 s (before any audio)")
    assert time.perf_counter() - started < 2.5
    await wait_for(lambda: emulator.open_sessions == 0)
    assert wav_files(tmp_path) == []


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", latency_ms=2600)])
async def test_progress_keeps_flowing_while_the_service_is_quiet(tmp_path: Path, emulator: Emulator) -> None:
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    options = ServerOptions(engine="realtime")
    async with Client(build_server(make_settings(tmp_path, emulator), options)) as client:
        result = await client.call_tool(
            "tts_realtime", {"text": "Hi.", "voice": "Cherry"}, progress_callback=on_progress
        )
    assert not result.is_error, text_of(result)
    assert messages[0].startswith("waiting for audio") and "ms of audio" in messages[-1]


def test_the_total_limit_grows_with_the_text() -> None:
    options = ServerOptions()
    assert options.max_text_chars == 20_000
    assert options.total_limit("x" * 100) == 120 and options.total_limit("x" * 20_000) == 2000


async def test_a_long_text_is_one_call_with_its_segments_counted(tmp_path: Path, emulator: Emulator) -> None:
    text = "This sentence is one of many in a long text. " * 60
    async with Client(build_server(make_settings(tmp_path, emulator), ServerOptions(engine="realtime"))) as client:
        result = await client.call_tool("tts_realtime", {"text": text, "voice": "Cherry", "sample_rate": 8000})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None and result.structured_content["segments"] == 60
    assert emulator.stats.commits == 60 and emulator.stats.connections_total == 1


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", rtf=2.0)])
async def test_concurrency_cap_queues_instead_of_failing(tmp_path: Path, emulator: Emulator) -> None:
    most_open = 0
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        nonlocal most_open
        most_open = max(most_open, emulator.open_sessions)
        messages.append(message or "")

    results: list[CallToolResult] = []
    async with Client(build_server(make_settings(tmp_path, emulator), ServerOptions(max_concurrent=1))) as client:

        async def call() -> None:
            results.append(
                await client.call_tool(
                    "tts_realtime", {"text": "Hi.", "voice": "Cherry"}, progress_callback=on_progress
                )
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            tg.start_soon(call)

    assert len(results) == 2 and not any(result.is_error for result in results)
    assert most_open == 1 and len(emulator.sessions) == 1  # the queued call reuses the first call's socket
    assert sorted(bool(r.structured_content and r.structured_content["reused_connection"]) for r in results) == [
        False,
        True,
    ]
    assert any(message.startswith("queued behind 1") for message in messages)


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", rtf=1.0)])
async def test_deadline_while_queued_says_the_server_is_busy(tmp_path: Path, emulator: Emulator) -> None:
    options = ServerOptions(max_concurrent=1, deadline_seconds=1.0, seconds_per_char=0)
    results: list[CallToolResult] = []
    async with Client(build_server(make_settings(tmp_path, emulator), options)) as client:

        async def call() -> None:
            results.append(await client.call_tool("tts_realtime", {"text": SENTENCE * 2, "voice": "Cherry"}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            tg.start_soon(call)
    busy, slow = sorted((assert_error(result) for result in results), key=lambda message: "busy" not in message)
    assert "busy" in busy and "try again shortly" in busy
    assert "did not finish" in slow
    assert len(emulator.sessions) == 1


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        ({"text": "Hi", "voice": "Chery"}, ("'Cherry'",)),
        ({"text": "", "voice": "Cherry"}, ("Invalid text",)),
        ({"text": "   ", "voice": "Cherry"}, ("text must contain something to speak",)),
        ({"voice": "Cherry"}, ("Missing required argument 'text'",)),
        ({"text": "Hi", "voice": "Cherry", "sample_rate": 12345}, ("sample_rate", "24000")),
        ({"text": "Hi", "voice": "Cherry", "output": "mp3"}, ("Invalid output",)),
        ({"text": "x" * 20001, "voice": "Cherry"}, ("20001 characters", "at most 20000", "split")),
        (
            {"text": "Hi", "voice": "Cherry", "instruction": "whisper", "model": "qwen3-tts-flash-realtime"},
            ("does not accept an instruction", "qwen3-tts-instruct-flash-realtime"),
        ),
        ({"text": "Hi", "voice": "Cherry", "model": "qwen3-tts-flash"}, ("HTTP-only",)),
        ({"text": "Hi", "voice": "Cherry", "output": "chunks", "filename": "a.wav"}, ("output 'file' or 'both'",)),
    ],
)
async def test_invalid_arguments_get_one_sentence(
    tmp_path: Path, arguments: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    async with Client(build_server(make_settings(tmp_path))) as client:
        result = await client.call_tool("tts_realtime", arguments)
    assert_error(result, *fragments)
    assert wav_files(tmp_path) == [] and not (tmp_path / "out").exists()  # no file, no empty folder


async def test_missing_key_says_how_to_set_one(tmp_path: Path) -> None:
    async with Client(build_server(make_settings(tmp_path), ServerOptions(engine="realtime"))) as client:
        result = await client.call_tool("tts_realtime", {"text": "Hi", "voice": "Cherry"})
    assert_error(result, "DASHSCOPE_API_KEY")
    assert not (tmp_path / "out").exists()  # a failed call leaves no empty folder either


async def test_authentication_failure_never_shows_the_key(tmp_path: Path, emulator: Emulator) -> None:
    secret = "sk-wrong-0123456789abcdef"
    settings = make_settings(tmp_path, emulator, key=secret)
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("tts_realtime", {"text": "Hi", "voice": "Cherry"})
    message = assert_error(result, "DASHSCOPE_API_KEY", "DASHSCOPE_REGION")
    assert secret not in message and "0123456789" not in message


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", throttle=True)])
async def test_rate_limiting_says_to_wait(tmp_path: Path, emulator: Emulator) -> None:
    options = ServerOptions(retry=NO_RETRY)
    async with Client(build_server(make_settings(tmp_path, emulator), options)) as client:
        result = await client.call_tool("tts_realtime", {"text": "Hi", "voice": "Cherry"})
    message = assert_error(result, "throttl")
    assert "wait" in message.lower() and message.count("etry") + message.count("again") == 1  # said once


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", fail_after_chunks=2)])
async def test_upstream_error_mid_stream_leaves_no_file(tmp_path: Path, emulator: Emulator) -> None:
    async with Client(build_server(make_settings(tmp_path, emulator))) as client:
        result = await client.call_tool("tts_realtime", {"text": SENTENCE, "voice": "Cherry"})
    message = assert_error(result)
    assert "call again" in message.lower()
    assert wav_files(tmp_path) == [] and len(emulator.sessions) == 1  # audio had arrived: no retry


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", reject_status=500)])
async def test_upstream_refusal_is_retried_then_reported(tmp_path: Path, emulator: Emulator) -> None:
    options = ServerOptions(retry=RetryOptions(max_retries=1, interval=0.01))
    async with Client(build_server(make_settings(tmp_path, emulator), options)) as client:
        result = await client.call_tool("tts_realtime", {"text": "Hi", "voice": "Cherry"})
    assert "again" in assert_error(result, "HTTP 500").lower()
    assert len(emulator.sessions) == 2


class BrokenSettings(Settings):
    """Settings whose output directory blows up with an unexpected error (a bug, not a TTSError)."""

    @property
    def audio_dir(self) -> Path:
        raise RuntimeError("disk on fire near sk-secret-value")


async def test_unexpected_failure_is_logged_and_generic(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with Client(build_server(BrokenSettings())) as client:
        result = await client.call_tool("tts_realtime", {"text": "Hi.", "voice": "Cherry"})
    message = assert_error(result, "internal error", "stderr")
    assert "disk on fire" not in message and "sk-secret" not in message
    records = [r for r in caplog.records if r.name == "alicloud_tts_realtime.mcp_server" and r.exc_info]
    assert records and "disk on fire" in str(records[0].exc_info[1])  # type: ignore[index]


# --- output directory and files ---------------------------------------------------------------


async def test_filename_stays_inside_the_output_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    async with Client(build_server(make_settings(tmp_path))) as client:
        ok = await client.call_tool("tts_realtime", {"text": "Hi.", "voice": "Cherry", "filename": "greetings/hello"})
        assert not ok.is_error, text_of(ok)
        audio_dir = Path(ok.structured_content["output_dir"])  # type: ignore[index]
        assert Path(ok.structured_content["file_path"]) == audio_dir / "greetings" / "hello.wav"  # type: ignore[index]
        (audio_dir / "escape").symlink_to(outside, target_is_directory=True)
        escapes = ("../up.wav", "/tmp/abs.wav", "a/../../b.wav", "escape/x.wav", str(outside / "y.wav"))
        unusable = (".", "a\x00b", "two\nlines", "x" * 300)  # a sentence each, not an internal error
        for name in escapes + unusable:
            result = await client.call_tool("tts_realtime", {"text": "Hi.", "voice": "Cherry", "filename": name})
            assert_error(result, "filename")
    assert list(outside.iterdir()) == []
    assert wav_files(tmp_path) == [audio_dir / "greetings" / "hello.wav"]


async def test_unwritable_output_directory_falls_back_to_the_data_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the output directory should be")
    settings = load_settings({"OUTPUT_DIR": str(blocker)}, home=tmp_path)
    options = ServerOptions(data_dir=tmp_path / "data")
    async with Client(build_server(settings, options)) as client:
        result = await client.call_tool("tts_realtime", {"text": "Hi.", "voice": "Cherry"})
    assert not result.is_error, text_of(result)
    data = result.structured_content
    assert data is not None
    assert Path(data["file_path"]).parent == (tmp_path / "data" / "audio").resolve()
    assert str(blocker) in data["output_dir_fallback"] and "not writable" in text_of(result)


async def test_nothing_writable_is_one_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    settings = load_settings({"OUTPUT_DIR": str(blocker)}, home=tmp_path)
    async with Client(build_server(settings, ServerOptions(data_dir=blocker / "data"))) as client:
        result = await client.call_tool("tts_realtime", {"text": "Hi.", "voice": "Cherry"})
    assert_error(result, "OUTPUT_DIR")


def test_user_data_dir_follows_xdg(tmp_path: Path) -> None:
    if os.name == "nt" or os.uname().sysname == "Darwin":
        pytest.skip("XDG rules apply on Linux and other Unix systems")
    assert (
        user_data_dir({"XDG_DATA_HOME": str(tmp_path)}, home=Path("/home/u"))
        == tmp_path / "alicloud-ai-audio-tts-realtime"
    )
    assert user_data_dir({}, home=Path("/home/u")) == Path("/home/u/.local/share/alicloud-ai-audio-tts-realtime")


# --- tts_voices and options -------------------------------------------------------------------


async def test_voices_lists_models_voices_and_instruction_support(tmp_path: Path) -> None:
    async with Client(build_server(make_settings(tmp_path))) as client:
        everything = await client.call_tool("tts_voices", {})
        one = await client.call_tool("tts_voices", {"model": "qwen3-tts-instruct-flash-realtime"})
        unknown = await client.call_tool("tts_voices", {"model": "qwen3-tts-flsh-realtime"})
    data = everything.structured_content
    assert data is not None and not everything.is_error
    models = {m["model"]: m for m in data["models"]}
    assert set(models) == set(catalog.MODELS)
    assert "Cherry" in models["qwen3-tts-flash-realtime"]["voices"]
    assert models["qwen3-tts-instruct-flash-realtime"]["takes_instruction"] is True
    assert models["qwen3-tts-flash-realtime"]["takes_instruction"] is False
    assert data["language_types"] == list(catalog.LANGUAGE_TYPES) and "offline" in data["engine"]
    assert "Cherry" in text_of(everything)
    assert one.structured_content is not None and len(one.structured_content["models"]) == 1
    assert_error(unknown, "Did you mean")


def test_options_are_validated_and_hide_the_token() -> None:
    for bad in ({"engine": "magic"}, {"max_concurrent": 0}, {"deadline_seconds": 0}, {"max_text_chars": 10**6}):
        with pytest.raises(ConfigurationError):
            ServerOptions(**bad)  # type: ignore[arg-type]
    assert "hunter2" not in repr(ServerOptions(auth_token="hunter2"))


def test_building_a_server_has_no_side_effects(tmp_path: Path) -> None:
    build_server(make_settings(tmp_path))
    assert not (tmp_path / "out").exists()


def test_the_package_does_not_import_the_mcp_sdk() -> None:
    import subprocess
    import sys

    code = "import sys, alicloud_tts_realtime; print(any(m == 'mcp' or m.startswith('mcp.') for m in sys.modules))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


@pytest.mark.parametrize(("name", "mime"), [("ogg", "audio/ogg"), ("mp3", "audio/mpeg"), ("flac", "audio/flac")])
async def test_format_sets_the_extension_and_the_links_mime_type(
    tmp_path: Path, emulator: Emulator, name: str, mime: str
) -> None:
    import soundfile

    async with Client(build_server(make_settings(tmp_path, emulator))) as client:
        result = await client.call_tool(
            "tts_realtime", {"text": "Send this.", "voice": "Cherry", "format": name, "filename": "share/clip"}
        )
        wrong = await client.call_tool(
            "tts_realtime", {"text": "Hi.", "voice": "Cherry", "format": "ogg", "filename": "clip.mp3"}
        )
        chunks = await client.call_tool(
            "tts_realtime", {"text": "Hi.", "voice": "Cherry", "output": "chunks", "format": "mp3"}
        )
    assert not result.is_error, text_of(result)
    data = result.structured_content
    assert data is not None and data["file_format"] == name
    path = Path(data["file_path"])
    assert path == Path(data["output_dir"]) / "share" / f"clip.{name}"
    link = result.content[1]
    assert isinstance(link, ResourceLink) and link.mime_type == mime and link.name == f"clip.{name}"
    info = soundfile.info(path)
    assert abs(info.frames / info.samplerate * 1000 - data["duration_ms"]) <= 50
    assert_error(wrong, "ends in .mp3 but the format is 'ogg'")
    assert_error(chunks, "format applies only to saved audio")
    assert len(emulator.sessions) == 1


@pytest.mark.skipif(os.name == "nt", reason="POSIX symlinks")
async def test_unusable_paths_get_a_sentence_not_an_internal_error(tmp_path: Path) -> None:
    """Issue 14, item 6: a symlink loop at the target, a path over 4,096 bytes, 1,000-level nesting."""
    async with Client(build_server(make_settings(tmp_path))) as client:
        ok = await client.call_tool("tts_realtime", {"text": "Hi.", "voice": "Cherry", "filename": "first"})
        audio_dir = Path(ok.structured_content["output_dir"])  # type: ignore[index]
        (audio_dir / "loop.wav").symlink_to(audio_dir / "loop.wav")
        (audio_dir / "knot").symlink_to(audio_dir / "knot", target_is_directory=True)
        cases = {
            "loop": "symbolic link loop",
            "knot/x.wav": "symbolic link loop",
            "/".join(["d" * 200] * 21): "over the 4095",  # 4,220 bytes
            "a/" * 1000 + "x.wav": "1000 folder levels",
        }
        for name, fragment in cases.items():
            result = await client.call_tool("tts_realtime", {"text": "Hi.", "voice": "Cherry", "filename": name})
            message = assert_error(result, "filename", fragment)
            assert "internal error" not in message and len(message) < 300
    assert sorted(p.name for p in audio_dir.iterdir()) == ["first.wav", "knot", "loop.wav"]


# --- text_format ------------------------------------------------------------------------------


async def test_markdown_is_made_speakable_before_it_is_sent(tmp_path: Path, emulator: Emulator) -> None:
    from alicloud_tts_realtime.protocol import InputTextBufferAppend, InputTextBufferCommit

    markdown = "## Done\n\n- Read [the guide](https://help.aliyun.com/x) at https://www.alibabacloud.com/help 🎉"
    async with Client(build_server(make_settings(tmp_path, emulator))) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        prop = tools["tts_realtime"].input_schema["properties"]["text_format"]
        assert prop["enum"] == ["markdown", "plain"] and prop["default"] == "markdown" and prop["description"]
        spoken = await client.call_tool("tts_realtime", {"text": markdown, "voice": "Cherry"})
        plain = await client.call_tool("tts_realtime", {"text": "**as is**", "voice": "Cherry", "text_format": "plain"})

    assert not spoken.is_error and not plain.is_error, text_of(spoken)
    expected = "Done\n\nRead the guide at alibabacloud.com"
    sent, pending = [], ""  # the text of each commit, over every session (calls may share a pooled one)
    for event in (event for record in emulator.sessions for event in record.events):
        if isinstance(event, InputTextBufferAppend):
            pending += event.text
        elif isinstance(event, InputTextBufferCommit):
            sent, pending = [*sent, pending], ""
    # The blank line between the heading and the list is a segment boundary: two commits, then the plain call.
    assert sent == [*expected.split("\n\n"), "**as is**"]
    assert spoken.structured_content is not None and plain.structured_content is not None
    assert spoken.structured_content["text_characters"] == len(expected)
    assert plain.structured_content["text_characters"] == len("**as is**")


async def test_markdown_with_nothing_to_read_is_refused_before_any_session(tmp_path: Path, emulator: Emulator) -> None:
    async with Client(build_server(make_settings(tmp_path, emulator))) as client:
        result = await client.call_tool("tts_realtime", {"text": "```sh\nrm -rf build\n```\n\n🎉", "voice": "Cherry"})
    assert_error(result, "nothing to speak once its Markdown is removed", "text_format 'plain'")
    assert emulator.sessions == [] and wav_files(tmp_path) == []

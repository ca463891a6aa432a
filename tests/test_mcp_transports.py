"""The MCP server over its real transports: a stdio subprocess and Streamable HTTP on loopback.

The stdio tests start ``python -m alicloud_tts_realtime serve`` exactly as an MCP client
configuration would; the HTTP tests serve :func:`build_http_app` with uvicorn on port 0 and use
the SDK's Streamable HTTP client, plus plain HTTP requests for the health check, the bearer token
and the DNS-rebinding protection.
"""

from __future__ import annotations

import base64
import sys
import time
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, ProgressNotification, TextContent

from alicloud_tts_realtime.cli import main
from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig
from alicloud_tts_realtime.errors import ConfigurationError
from alicloud_tts_realtime.mcp_http import HEALTH_PATH, RunningHTTP, build_http_app, serving_http
from alicloud_tts_realtime.mcp_server import AUDIO_META_KEY, ServerOptions, build_server
from alicloud_tts_realtime.settings import load_settings

pytestmark = pytest.mark.anyio

SENTENCE = "Hello! This is a short test of the speech server."


def text_of(result: CallToolResult) -> str:
    first = result.content[0]
    assert isinstance(first, TextContent)
    return first.text


async def wait_for(predicate: object, timeout: float = 3.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await anyio.sleep(0.01)


def stdio_server(tmp_path: Path, *options: str, **env: str) -> StdioServerParameters:
    """``serve`` in a fresh process: its own HOME (no credentials file), cwd and data directory."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "alicloud_tts_realtime", "serve", *options],
        env={"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"), **env},
        cwd=cwd,
    )


# --- stdio ------------------------------------------------------------------------------------


async def test_stdio_fresh_machine_speaks_to_a_wav_file(tmp_path: Path) -> None:
    """Done-when #1: list tts_realtime, call it with only text and voice, get a playable WAV."""
    async with Client(stdio_server(tmp_path)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("tts_realtime", {"text": SENTENCE, "voice": "Cherry"})

    assert names == {"tts_realtime", "tts_voices", "tts_stop"}
    assert not result.is_error, text_of(result)
    data = result.structured_content
    assert data is not None and data["engine"] == "offline"
    path = Path(data["file_path"])
    assert path.is_relative_to(tmp_path / "cwd" / "output")  # the default OUTPUT_DIR, relative to the cwd
    with wave.open(str(path), "rb") as wav:
        assert wav.getframerate() == 24000 and wav.getnchannels() == 1
        assert 1.0 < wav.getnframes() / wav.getframerate() < 8.0


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", rtf=1.0)])
async def test_stdio_realtime_streams_progress_and_cancels_upstream(tmp_path: Path, emulator: Emulator) -> None:
    """Done-when #2 and #3: through the realtime WebSocket with progress; cancelling closes it."""
    params = stdio_server(
        tmp_path,
        DASHSCOPE_API_KEY="sk-emulator",
        DASHSCOPE_REALTIME_URL=emulator.url,
        OUTPUT_DIR=str(tmp_path / "out"),
    )
    updates: list[float] = []
    first_progress = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append(progress)
        first_progress.set()

    streamed: list[dict[str, object]] = []

    async def on_message(message: object) -> None:
        if isinstance(message, ProgressNotification) and message.params.meta:
            streamed.append(message.params.meta[AUDIO_META_KEY])

    async with Client(params, message_handler=on_message) as client:
        started = time.perf_counter()
        result = await client.call_tool(
            "tts_realtime",
            {"text": "Hi there.", "voice": "Ethan", "stream_chunks": True},
            progress_callback=on_progress,
        )
        assert not result.is_error, text_of(result)
        assert result.structured_content is not None and result.structured_content["engine"] == "realtime"
        assert len(updates) >= 3 and updates == sorted(updates)
        assert len(streamed) == len(updates)
        streamed_ms = sum(len(base64.b64decode(str(chunk["pcm_base64"]))) for chunk in streamed) / 2 / 24
        assert streamed_ms == pytest.approx(result.structured_content["duration_ms"], abs=1)
        # serve prewarmed a session for the default voice; the Ethan call opened its own, kept in the pool.
        prewarmed, ethan = emulator.sessions
        assert [type(e).__name__ for e in prewarmed.events] == ["SessionUpdate"] and prewarmed.closed_by is None
        assert ethan.closed_by is None and emulator.open_sessions == 2
        assert result.structured_content["reused_connection"] is False
        assert time.perf_counter() - started >= result.structured_content["duration_ms"] / 1000 * 0.8  # paced

        first_progress = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await client.call_tool(
                    "tts_realtime", {"text": SENTENCE * 3, "voice": "Ethan"}, progress_callback=on_progress
                )

            tg.start_soon(call)
            with anyio.fail_after(5):
                await first_progress.wait()
            assert emulator.open_sessions == 2 and len(emulator.sessions) == 2  # the pooled Ethan socket again
            tg.cancel_scope.cancel()
        await wait_for(lambda: emulator.open_sessions == 1)  # the cancelled call's socket is discarded
        assert emulator.sessions[1].closed_by == "client"
    await wait_for(lambda: emulator.open_sessions == 0)  # the server's exit closes the pool
    assert emulator.sessions[1].sent.count("response.done") == 1  # the cancelled response never completed
    assert len(list((tmp_path / "out").rglob("*.wav"))) == 1  # the first call's file only


async def test_stdio_five_sequential_calls_share_one_connection(tmp_path: Path, emulator: Emulator) -> None:
    """Issue 10, done when: five sequential calls through one serve process use one connection."""
    params = stdio_server(
        tmp_path, "--no-prewarm", DASHSCOPE_API_KEY="sk-emulator", DASHSCOPE_REALTIME_URL=emulator.url
    )
    results = []
    async with Client(params) as client:
        for i in range(5):
            result = await client.call_tool("tts_realtime", {"text": f"Call {i}.", "voice": "Cherry"})
            assert not result.is_error, text_of(result)
            assert result.structured_content is not None
            results.append(result.structured_content)
    assert [r["reused_connection"] for r in results] == [False, True, True, True, True]
    assert results[0]["connect_ms"] > 0 and [r["connect_ms"] for r in results[1:]] == [0, 0, 0, 0]
    assert emulator.connections_total == 1 and len({r["session_id"] for r in results}) == 1


# --- HTTP -------------------------------------------------------------------------------------


@asynccontextmanager
async def http_server(
    tmp_path: Path, emulator: Emulator | None = None, **options: object
) -> AsyncIterator[RunningHTTP]:
    environ = {"OUTPUT_DIR": str(tmp_path / "out")}
    if emulator is not None:
        environ |= {"DASHSCOPE_API_KEY": "sk-emulator", "DASHSCOPE_REALTIME_URL": emulator.url}
    server_options = ServerOptions(**options)  # type: ignore[arg-type]
    app = build_http_app(build_server(load_settings(environ, home=tmp_path), server_options), server_options)
    async with serving_http(app, "127.0.0.1", 0) as running:
        yield running


async def test_http_serves_mcp_health_and_progress(tmp_path: Path, emulator: Emulator) -> None:
    async with http_server(tmp_path, emulator) as running:
        async with httpx.AsyncClient() as http:
            health = await http.get(running.base_url + HEALTH_PATH)
        assert health.status_code == 200 and health.json()["status"] == "ok"

        updates: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            updates.append(progress)

        async with Client(running.url) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            result = await client.call_tool(
                "tts_realtime", {"text": SENTENCE, "voice": "Cherry"}, progress_callback=on_progress
            )
            alias = await client.call_tool("tts.realtime", {"text": "Hi.", "voice": "Cherry", "output": "chunks"})
    assert names == {"tts_realtime", "tts_voices", "tts_stop"}
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None and result.structured_content["engine"] == "realtime"
    assert Path(result.structured_content["file_path"]).is_file()
    assert updates and updates[-1] == pytest.approx(result.structured_content["duration_ms"], abs=1)
    assert not alias.is_error and alias.structured_content is not None
    assert alias.structured_content["audio_base64_pcm_chunks"]


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", rtf=1.0)])
async def test_http_dropped_request_closes_the_upstream_session(tmp_path: Path, emulator: Emulator) -> None:
    first_progress = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        first_progress.set()

    async with http_server(tmp_path, emulator) as running, Client(running.url) as client:
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await client.call_tool(
                    "tts_realtime", {"text": SENTENCE * 3, "voice": "Cherry"}, progress_callback=on_progress
                )

            tg.start_soon(call)
            with anyio.fail_after(5):
                await first_progress.wait()
            assert emulator.open_sessions == 1
            tg.cancel_scope.cancel()
        await wait_for(lambda: emulator.open_sessions == 0)
    assert not list((tmp_path / "out").rglob("*.wav"))


async def test_http_rejects_rebound_host_names(tmp_path: Path) -> None:
    async with http_server(tmp_path) as running, httpx.AsyncClient() as http:
        response = await http.post(
            running.url,
            headers={"Host": "evil.example:80", "Accept": "application/json, text/event-stream"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
    assert response.status_code == 421


async def test_http_bearer_token(tmp_path: Path) -> None:
    token = "tok-1234567890"
    async with http_server(tmp_path, auth_token=token) as running:
        async with httpx.AsyncClient() as http:
            anonymous = await http.post(running.url, json={})
            wrong = await http.post(running.url, json={}, headers={"Authorization": "Bearer tok-wrong"})
            health = await http.get(running.base_url + HEALTH_PATH)
        assert anonymous.status_code == wrong.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert health.status_code == 200  # load balancers probe without the token

        authorized = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        async with authorized, Client(streamable_http_client(running.url, http_client=authorized)) as client:
            result = await client.call_tool("tts_realtime", {"text": "Hi.", "voice": "Cherry"})
    assert not result.is_error, text_of(result)


def test_http_refuses_a_public_address_without_a_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = build_server(load_settings({}, home=tmp_path))
    with pytest.raises(ConfigurationError, match="auth-token"):
        build_http_app(server, ServerOptions(), host="0.0.0.0")
    build_http_app(server, ServerOptions(auth_token="t"), host="0.0.0.0")  # with a token it is allowed

    code = main(["serve", "--transport", "http", "--host", "0.0.0.0", "--port", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "auth-token" in err and "TTS_MCP_AUTH_TOKEN" in err and "Traceback" not in err


def test_serve_rejects_bad_options_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--max-concurrent", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "max_concurrent" in err and err.count("\n") == 1

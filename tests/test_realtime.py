"""The native realtime client against the emulator over loopback: the full session and every error path."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from alicloud_tts_realtime import (
    AuthenticationError,
    ConnectionFailedError,
    NoAudioError,
    RateLimitError,
    ResponseTimeoutError,
    ServiceError,
    SpeechRequest,
    TTSError,
    build_request,
)
from alicloud_tts_realtime import protocol as p
from alicloud_tts_realtime.audio import decode_chunk
from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig, serve_emulator
from alicloud_tts_realtime.engines.realtime import RealtimeEngine, build_url
from alicloud_tts_realtime.service import RetryOptions, synthesize
from alicloud_tts_realtime.settings import Settings

pytestmark = pytest.mark.anyio

KEY = "sk-emulator"


def settings_for(emulator: Emulator, key: str = KEY, **overrides: object) -> Settings:
    base = Settings(api_key=SecretStr(key), key_source="test", realtime_url=emulator.url, workspace="ws-test")
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def unchecked(**fields: object) -> SpeechRequest:
    """A request that skips catalog validation, to make the service itself refuse it."""
    return SpeechRequest.model_construct(**{"sample_rate": 24000, "instruction": None, "language_type": None, **fields})


async def test_full_session_in_commit_mode(emulator: Emulator) -> None:
    request = build_request(text="Hello, 世界。", voice="Cherry", sample_rate=16000, language_type="Chinese")
    async with RealtimeEngine(settings_for(emulator)) as engine:  # closing the engine finishes its pooled session
        response = await synthesize(request, engine, output="chunks")
        assert response.reused_connection is False and response.connect_ms > 0

    assert response.finish_reason == "stop"
    assert (response.engine, response.model, response.voice) == ("realtime", "qwen3-tts-flash-realtime", "Cherry")
    assert response.sample_rate == 16000
    assert response.characters == 7 + 2 * 2 + 1  # "Hello, " + 2 ideographs + "。" (§3.9)
    assert response.session_id is not None and response.session_id.startswith("sess_")
    assert response.first_audio_ms is not None and response.first_audio_ms < 2000
    pcm = b"".join(decode_chunk(c) for c in response.audio_base64_pcm_chunks)
    assert len(pcm) / 2 / 16000 * 1000 == pytest.approx(response.duration_ms, abs=1)
    assert response.duration_ms > 300

    (record,) = emulator.sessions
    assert [e.type for e in record.events] == [
        "session.update",
        "input_text_buffer.append",
        "input_text_buffer.commit",
        "session.finish",
    ]
    update = record.events[0]
    assert isinstance(update, p.SessionUpdate)
    assert update.session.mode == "commit" and update.session.sample_rate == 16000
    assert update.session.language_type == "Chinese" and update.session.instructions is None
    assert record.sent[0] == "session.created" and record.sent[-1] == "session.finished"
    assert record.workspace == "ws-test"
    assert record.user_agent is not None and record.user_agent.startswith("alicloud-ai-audio-tts-realtime/")
    assert "authorization" not in record.headers
    # The client closes after session.finished: the real service may not (§3.8).
    assert (record.closed_by, record.close_code) == ("client", 1000)


@pytest.mark.parametrize(
    "emulator_config",
    [
        EmulatorConfig(audio="signal", server_commit_min_chars=12, emit_committed_on_auto=False),
        EmulatorConfig(audio="signal", server_commit_min_chars=12, emit_committed_on_auto=True),
    ],
    ids=["silent-auto-commit", "committed-on-auto"],
)
async def test_full_session_in_server_commit_mode(emulator: Emulator) -> None:
    text = "First sentence here. Second one follows. And a tail without an end"
    request = build_request(text=text, voice="Ethan", sample_rate=24000)
    engine = RealtimeEngine(settings_for(emulator), mode="server_commit")
    response = await synthesize(request, engine, output="chunks")

    (record,) = emulator.sessions
    assert [e.type for e in record.events] == ["session.update", "input_text_buffer.append", "session.finish"]
    update = record.events[0]
    assert isinstance(update, p.SessionUpdate) and update.session.mode == "server_commit"
    # The service segments the text itself (several commits when it says so) and closes the open
    # response at session.finish (§3.6).
    assert record.sent.count("input_text_buffer.committed") >= (2 if emulator.config.emit_committed_on_auto else 0)
    assert record.sent.index("response.done") < record.sent.index("session.finished")
    assert record.sent[-1] == "session.finished"
    assert response.finish_reason == "stop" and response.characters == len(text)  # summed over the responses
    pcm = b"".join(decode_chunk(c) for c in response.audio_base64_pcm_chunks)
    assert len(pcm) / 2 / 24000 * 1000 == pytest.approx(response.duration_ms, abs=1) and response.duration_ms > 2000


async def test_instruction_selects_the_instruct_model_and_is_sent(emulator: Emulator) -> None:
    request = build_request(text="Good morning.", voice="Serena", instruction="cheerful, a little fast")
    response = await synthesize(request, RealtimeEngine(settings_for(emulator)))
    assert response.model == "qwen3-tts-instruct-flash-realtime"
    (record,) = emulator.sessions
    assert record.model == "qwen3-tts-instruct-flash-realtime"
    update = record.events[0]
    assert isinstance(update, p.SessionUpdate) and update.session.instructions == "cheerful, a little fast"


async def test_wrong_key_fails_at_the_handshake_in_well_under_a_second(emulator: Emulator) -> None:
    secret = "sk-wrong-secret-123456"
    started = time.perf_counter()
    with pytest.raises(AuthenticationError) as info:
        await synthesize(build_request(text="hi", voice="Cherry"), RealtimeEngine(settings_for(emulator, secret)))
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0  # milliseconds in fact (benchmarks/first_audio.py); the official SDK waits 5 s
    assert (info.value.status, info.value.code) == (401, "InvalidApiKey")
    assert "refused the API key (HTTP 401: Invalid API-key provided)" in str(info.value)
    assert info.value.request_id
    assert not info.value.retryable
    assert secret not in str(info.value) and secret not in repr(info.value.__context__)
    assert len(emulator.sessions) == 1  # an authentication failure is not retried


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", unknown_model="close")])
async def test_unknown_model_closes_without_audio(emulator: Emulator) -> None:
    request = unchecked(text="hi", voice="Cherry", model="qwen3-tts-nonexistent-realtime")
    with pytest.raises(NoAudioError, match="before any audio"):
        async for _ in RealtimeEngine(settings_for(emulator)).stream(request):
            pass
    (record,) = emulator.sessions
    assert record.sent == ["session.created"]


async def test_rejected_update_is_a_service_error_naming_the_parameter(emulator: Emulator) -> None:
    # Dylan is a flash voice, not an instruct one: our catalog refuses it, so skip it to see the service's answer.
    engine = RealtimeEngine(settings_for(emulator))
    request = unchecked(text="hi", voice="Dylan", model="qwen3-tts-instruct-flash-realtime")
    with pytest.raises(ServiceError) as info:
        async for _ in engine.stream(request):
            pass
    assert info.value.param == "session.voice"
    assert info.value.error_type == "invalid_request_error" and not info.value.retryable
    assert emulator.open_sessions == 0


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", throttle=True)])
async def test_throttling_close_is_retryable_and_retried_before_audio(emulator: Emulator) -> None:
    with pytest.raises(RateLimitError, match="throttl") as info:
        await synthesize(
            build_request(text="hi", voice="Cherry"),
            RealtimeEngine(settings_for(emulator)),
            retry=RetryOptions(max_retries=2, interval=0),
        )
    assert info.value.retryable
    assert len(emulator.sessions) == 3


@pytest.mark.parametrize(
    ("emulator_config", "error"),
    [
        (EmulatorConfig(audio="signal", fail_after_chunks=2), ServiceError),
        (EmulatorConfig(audio="signal", drop_after_chunks=2), ConnectionFailedError),
    ],
)
async def test_failures_after_audio_are_never_retried(emulator: Emulator, error: type[TTSError]) -> None:
    received: list[int] = []

    async def on_chunk(chunk: object) -> None:
        received.append(1)

    with pytest.raises(error) as info:
        await synthesize(
            build_request(text="A sentence long enough for several chunks of audio.", voice="Cherry"),
            RealtimeEngine(settings_for(emulator)),
            on_chunk=on_chunk,  # type: ignore[arg-type]
            retry=RetryOptions(max_retries=3, interval=0),
        )
    assert info.value.retryable  # retryable in itself …
    assert len(received) == 2 and len(emulator.sessions) == 1  # … but audio was out: never spoken twice


@pytest.mark.parametrize(
    ("emulator_config", "error", "retryable"),
    [
        (EmulatorConfig(audio="signal", reject_status=429), RateLimitError, True),
        (EmulatorConfig(audio="signal", reject_status=403), AuthenticationError, False),
        (EmulatorConfig(audio="signal", reject_status=503), ServiceError, True),
    ],
)
async def test_refused_upgrades_are_typed(emulator: Emulator, error: type[TTSError], retryable: bool) -> None:
    with pytest.raises(error) as info:
        await synthesize(
            build_request(text="hi", voice="Cherry"), RealtimeEngine(settings_for(emulator)), retry=RetryOptions(0)
        )
    assert info.value.retryable is retryable


@pytest.mark.parametrize("path", ["", "/api-ws/v1/realtim"])
async def test_a_wrong_path_is_a_final_error_naming_the_path_not_the_key(emulator: Emulator, path: str) -> None:
    base = emulator.url.removesuffix("/api-ws/v1/realtime")
    from websockets.asyncio.client import connect

    attempts = 0

    async def counted(url: str, **kwargs: object) -> object:
        nonlocal attempts
        attempts += 1
        return await connect(url, **kwargs)  # type: ignore[arg-type]

    engine = RealtimeEngine(settings_for(emulator, realtime_url=f"{base}{path}"), connect=counted)
    with pytest.raises(ServiceError) as info:
        await synthesize(build_request(text="hi", voice="Cherry"), engine, retry=RetryOptions(2, interval=0.01))
    assert attempts == 1  # not retried
    message = str(info.value)
    assert (info.value.status, info.value.code, info.value.retryable) == (404, "InvalidURL", False)
    assert f"{base.removeprefix('ws://')} answered the WebSocket upgrade on path {path or '/'} with HTTP 404" in message
    assert "DASHSCOPE_REALTIME_URL: its path should end in /api-ws/v1/realtime" in message
    assert "API key" not in message and "model=" not in message


@asynccontextmanager
async def raw_server(
    response: bytes, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server answering every request with ``response``; yields ``host:port`` and a connection count."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}", connections
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("status", [401, 403])
async def test_a_bare_refusal_does_not_claim_the_key_was_refused(status: int) -> None:
    # A proxy or a server that is not DashScope may refuse like this: no {code, message} body.
    reply = f"HTTP/1.1 {status} Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
    async with raw_server(reply) as (netloc, connections):
        settings = Settings(api_key=SecretStr(KEY), realtime_url=f"ws://{netloc}/api-ws/v1/realtime?region=x")
        with pytest.raises(AuthenticationError) as info:
            await synthesize(build_request(text="hi", voice="Cherry"), RealtimeEngine(settings))
    message = str(info.value)
    assert info.value.status == status and not info.value.retryable
    assert f"{netloc} answered the WebSocket upgrade on path /api-ws/v1/realtime with HTTP {status}" in message
    assert "no DashScope error body" in message and "refused the API key" not in message
    assert "DASHSCOPE_API_KEY" in message and "DASHSCOPE_REALTIME_URL" in message
    assert "region=x" not in message and "model=" not in message and KEY not in message
    assert len(connections) == 1


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", latency_ms=1500)])
async def test_silence_past_the_idle_timeout(emulator: Emulator) -> None:
    engine = RealtimeEngine(settings_for(emulator, idle_timeout=0.3))
    started = time.perf_counter()
    with pytest.raises(ResponseTimeoutError, match="No event") as info:
        await synthesize(build_request(text="hi", voice="Cherry"), engine, retry=RetryOptions(0))
    assert isinstance(info.value, TimeoutError)
    assert time.perf_counter() - started < 1.2


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", handshake_delay_ms=1500)])
async def test_slow_handshake_times_out(emulator: Emulator) -> None:
    engine = RealtimeEngine(settings_for(emulator, connect_timeout=0.3))
    with pytest.raises(ResponseTimeoutError, match="handshake"):
        await synthesize(build_request(text="hi", voice="Cherry"), engine, retry=RetryOptions(0))


async def test_nothing_listening_is_a_connection_failure(tmp_path: Path) -> None:
    with anyio.fail_after(5):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()  # the port is now free, so connecting is refused
    settings = Settings(api_key=SecretStr(KEY), realtime_url=f"ws://127.0.0.1:{port}/api-ws/v1/realtime?model=x")
    with pytest.raises(ConnectionFailedError) as info:
        await synthesize(build_request(text="hi", voice="Cherry"), RealtimeEngine(settings), retry=RetryOptions(0))
    assert info.value.retryable
    message = str(info.value)
    assert message.startswith(f"Cannot reach the realtime service at 127.0.0.1:{port}: ")
    assert "(ConnectionRefusedError)" in message and "/api-ws" not in message and "model=x" not in message


async def test_a_host_that_does_not_resolve_is_named_with_the_cause() -> None:
    # .invalid never resolves (RFC 6761): the resolver answers at once, without the network.
    settings = Settings(api_key=SecretStr(KEY), realtime_url="wss://nonexistent.invalid/api-ws/v1/realtime")
    with anyio.fail_after(5), pytest.raises(ConnectionFailedError) as info:
        await synthesize(build_request(text="hi", voice="Cherry"), RealtimeEngine(settings), retry=RetryOptions(0))
    message = str(info.value)
    assert message.startswith("Cannot reach the realtime service at nonexistent.invalid:443: ")
    assert message.endswith("(gaierror).") and len(message) > len(
        "Cannot reach … at nonexistent.invalid:443: (gaierror)."
    )
    assert info.value.retryable


def self_signed_context(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1, which no client trusts."""
    import datetime
    import ipaddress

    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "server.pem"
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pem)
    return context


async def test_an_untrusted_certificate_is_named_and_not_retried(tmp_path: Path) -> None:
    from websockets.asyncio.client import connect

    attempts: list[str] = []

    def counting_connect(url: str, **kwargs: object) -> object:
        attempts.append(url)
        return connect(url, **kwargs)  # type: ignore[arg-type]

    # The server never sees a connection: the client aborts the TLS handshake first.
    async with raw_server(b"", self_signed_context(tmp_path)) as (netloc, _):
        settings = Settings(api_key=SecretStr(KEY), realtime_url=f"wss://{netloc}/api-ws/v1/realtime")
        with anyio.fail_after(5), pytest.raises(ConnectionFailedError) as info:
            await synthesize(
                build_request(text="hi", voice="Cherry"),
                RealtimeEngine(settings, connect=counting_connect),
                retry=RetryOptions(2, interval=0),
            )
    message = str(info.value)
    assert message.startswith(f"Cannot reach the realtime service at {netloc}: certificate verify failed: ")
    assert "(SSLCertVerificationError)" in message and "CA certificates" in message
    assert not info.value.retryable
    assert len(attempts) == 1


@pytest.mark.parametrize(
    "emulator_config",
    [
        EmulatorConfig(audio="signal", close_after_finished_ms=0),
        EmulatorConfig(audio="signal", error_shape="short", echo_extra_fields=True),
        EmulatorConfig(audio="signal", api_key=None),
    ],
    ids=["server-closes-after-finish", "short-errors-and-full-echo", "any-key"],
)
async def test_variants_of_open_questions_are_tolerated(emulator: Emulator) -> None:
    request = build_request(text="Variant check.", voice="Ethan", instruction="calm")
    response = await synthesize(request, RealtimeEngine(settings_for(emulator)))
    assert response.finish_reason == "stop" and response.duration_ms > 0


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", rtf=1.0)])
async def test_cancellation_closes_the_upstream_session_at_once(emulator: Emulator, tmp_path: Path) -> None:
    first_chunk = anyio.Event()

    async def on_chunk(chunk: object) -> None:
        first_chunk.set()

    text = "This sentence is long enough to take a few seconds to speak at real-time pacing."
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await synthesize(
                build_request(text=text, voice="Cherry"),
                RealtimeEngine(settings_for(emulator)),
                output="file",
                audio_dir=tmp_path,
                on_chunk=on_chunk,  # type: ignore[arg-type]
            )

        tg.start_soon(run)
        with anyio.fail_after(5):
            await first_chunk.wait()
        assert emulator.open_sessions == 1
        tg.cancel_scope.cancel()
    with anyio.fail_after(2):
        while emulator.open_sessions:
            await asyncio.sleep(0.01)
    (record,) = emulator.sessions
    assert record.closed_by == "client"
    assert "response.done" not in record.sent
    assert list(tmp_path.iterdir()) == []  # nothing half-written


async def test_the_key_never_reaches_logs_or_errors(emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await synthesize(build_request(text="hi", voice="Cherry"), RealtimeEngine(settings_for(emulator)))
    secret = "sk-should-never-leak-42"
    with pytest.raises(AuthenticationError) as info:
        await synthesize(build_request(text="hi", voice="Cherry"), RealtimeEngine(settings_for(emulator, secret)))
    assert KEY not in caplog.text and secret not in caplog.text
    assert secret not in str(info.value)
    assert info.value.__cause__ is None


def test_url_keeps_an_existing_query() -> None:
    assert build_url("ws://h/api-ws/v1/realtime", "qwen3-tts-flash-realtime") == (
        "ws://h/api-ws/v1/realtime?model=qwen3-tts-flash-realtime"
    )
    assert build_url("ws://h/api-ws/v1/realtime?region=x", "m") == "ws://h/api-ws/v1/realtime?region=x&model=m"


async def test_several_sessions_in_parallel(emulator: Emulator) -> None:
    engine = RealtimeEngine(settings_for(emulator))
    results: list[int] = []

    async def one(i: int) -> None:
        response = await synthesize(build_request(text=f"Parallel request number {i}.", voice="Cherry"), engine)
        results.append(response.duration_ms)

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(one, i)
    assert len(results) == 6 and all(d > 0 for d in results)
    # The pool holds at most DASHSCOPE_MAX_CONNECTIONS (3) sockets; the other calls reuse them.
    assert len({r.session_id for r in emulator.sessions}) == 3
    assert engine.pool.peak_open == 3
    await engine.aclose()


async def test_speech_from_the_emulator_through_the_client(tmp_path: Path) -> None:
    from speech_features import assert_speech_like

    async with serve_emulator(EmulatorConfig(audio="speech")) as emulator:
        response = await synthesize(
            build_request(text="The emulator speaks real words.", voice="Cherry", sample_rate=24000),
            RealtimeEngine(settings_for(emulator)),
            output="both",
            audio_dir=tmp_path,
        )
    pcm = b"".join(decode_chunk(c) for c in response.audio_base64_pcm_chunks)
    assert_speech_like(pcm, 24000)
    assert response.file_path and Path(response.file_path).read_bytes()[:4] == b"RIFF"


async def test_an_unwritable_output_fails_before_the_paid_call(emulator: Emulator, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("where a directory should be")
    request = build_request(text="Never sent.", voice="Cherry")
    engine = RealtimeEngine(settings_for(emulator))
    with pytest.raises(TTSError, match=r"Cannot write audio to .*a-file.*OUTPUT_DIR") as caught:
        await synthesize(request, engine, output="file", audio_dir=blocker / "audio")
    assert caught.value.retryable is False
    with pytest.raises(TTSError, match="is a directory"):
        await synthesize(request, engine, output="both", path=tmp_path)
    assert emulator.sessions == []  # nothing reached the (paid) service
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


async def test_a_write_failure_after_the_synthesis_is_an_output_error(emulator: Emulator, tmp_path: Path) -> None:
    from alicloud_tts_realtime import LocalError, OutputError

    folder = tmp_path / "later"

    async def block_the_folder(_chunk: object) -> None:  # the folder becomes a file mid-synthesis
        if not folder.exists():
            folder.write_text("")

    request = build_request(text="Saved nowhere.", voice="Cherry")
    with pytest.raises(OutputError, match=r"synthesized but could not be written to .*later/x\.wav") as caught:
        await synthesize(
            request,
            RealtimeEngine(settings_for(emulator)),
            output="file",
            path=folder / "x.wav",
            on_chunk=block_the_folder,
        )
    assert not isinstance(caught.value, LocalError)  # the service was called: exit 1, not "nothing was sent"
    assert len(emulator.sessions) == 1 and list(tmp_path.iterdir()) == [folder]


def test_a_library_error_is_named_not_quoted() -> None:
    # websockets quotes the offending header, here the key, in InvalidHeaderValue's message.
    from websockets.exceptions import InvalidHeaderValue

    from alicloud_tts_realtime.engines.realtime import map_websocket_errors

    url = "wss://dashscope.aliyuncs.com/api-ws/v1/realtime?model=m"
    with pytest.raises(ConnectionFailedError) as info, map_websocket_errors(url=url):
        raise InvalidHeaderValue("Authorization", "Bearer sk-SECRET\u200b")
    assert str(info.value) == "Cannot reach the realtime service at dashscope.aliyuncs.com:443: InvalidHeaderValue."


@pytest.mark.parametrize("how", ["cancel scope", "task.cancel"])
async def test_a_call_cancelled_while_its_file_is_written_leaves_nothing(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    import threading

    from alicloud_tts_realtime.sinks import WavFileSink

    writing, real_finish = threading.Event(), WavFileSink._finish

    def slow_finish(self: WavFileSink, fd: int) -> None:
        writing.set()
        time.sleep(0.4)  # a slow disk: the cancellation arrives mid-write
        real_finish(self, fd)

    monkeypatch.setattr(WavFileSink, "_finish", slow_finish)
    call = synthesize(
        build_request(text="Cancelled while saving.", voice="Cherry"),
        RealtimeEngine(settings_for(emulator)),
        output="file",
        path=tmp_path / "out" / "x.wav",
    )
    if how == "cancel scope":
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: call)
            while not writing.is_set():
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    else:  # plain asyncio, as Ctrl-C in asyncio.run() does
        task = asyncio.ensure_future(call)
        while not writing.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await anyio.sleep(0.6)  # the worker thread has finished by now
    assert list(tmp_path.iterdir()) == []  # neither x.wav nor a .part file, nor the folder made for them

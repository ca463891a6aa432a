"""Issue 14, "Hardening": each test here failed before its fix (the item number is in the name)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread
import httpx
import pytest
from pydantic import SecretStr

from alicloud_tts_realtime.cli import main
from alicloud_tts_realtime.emulator import Emulator
from alicloud_tts_realtime.engines.http_sse import HttpEngine
from alicloud_tts_realtime.errors import ConnectionFailedError, InvalidRequestError
from alicloud_tts_realtime.mcp_http import build_http_app, serving_http
from alicloud_tts_realtime.mcp_server import ServerOptions, build_server
from alicloud_tts_realtime.models import build_request
from alicloud_tts_realtime.quoting import quote
from alicloud_tts_realtime.settings import Settings, load_settings

pytestmark = pytest.mark.anyio


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*argv: str, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alicloud_tts_realtime", *argv],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


# --- 11: -v after the subcommand -------------------------------------------------------------


@pytest.mark.parametrize("command", ["speak", "voices", "serve", "emulator", "probe"])
def test_11_verbose_is_accepted_after_every_subcommand(command: str) -> None:
    done = cli(command, "-vv", "--help")
    assert done.returncode == 0, done.stderr
    assert "--verbose" in done.stdout


def test_11_verbose_after_the_subcommand_turns_on_debug_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path))
    try:
        assert main(["voices", "-vv", "--json"]) == 0
        assert logging.getLogger("alicloud_tts_realtime").level == logging.DEBUG
        assert main(["-v", "voices"]) == 0  # before the subcommand still works
        assert logging.getLogger("alicloud_tts_realtime").level == logging.INFO
    finally:
        logging.getLogger("alicloud_tts_realtime").setLevel(logging.NOTSET)


# --- 12: -vv logs every protocol step ----------------------------------------------------------


async def test_12_debug_logs_each_event_type_and_the_endpoint_but_no_audio_or_key(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = {"DASHSCOPE_API_KEY": "sk-emulator", "DASHSCOPE_REALTIME_URL": emulator.url, "OUTPUT_DIR": str(tmp_path)}
    argv = ("speak", "Hello there.", "--engine", "realtime", "-vv")
    done = await anyio.to_thread.run_sync(lambda: cli(*argv, env=env))
    assert done.returncode == 0, done.stderr
    log = done.stderr
    port = emulator.url.split(":")[2].split("/")[0]
    assert f"realtime endpoint: 127.0.0.1:{port}/api-ws/v1/realtime" in log
    for sent in ("session.update", "input_text_buffer.append", "input_text_buffer.commit", "session.finish"):
        assert f"sending {sent}" in log, sent
    for received in ("session.created", "session.updated", "response.audio.delta", "response.done", "session.finished"):
        assert f"received '{received}'" in log, received
    assert "sk-emulator" not in log
    assert '"delta"' not in log and "model=" not in log.split("realtime endpoint")[1].splitlines()[0]


# --- 13: a closed stdout ---------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["voices", "--json"], ["voices"]])
def test_13_a_closed_stdout_exits_quietly(argv: list[str]) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone, as after "| head -1"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "alicloud_tts_realtime", *argv],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == 141  # 128 + SIGPIPE, as a shell would report it


# --- 14: GET /mcp ----------------------------------------------------------------------------


async def test_14_get_on_the_stateless_endpoint_is_405_at_once(tmp_path: Path) -> None:
    options = ServerOptions()
    app = build_http_app(build_server(load_settings({}, home=tmp_path), options), options)
    async with serving_http(app, "127.0.0.1", 0) as running, httpx.AsyncClient(timeout=3) as http:
        response = await http.get(running.url, headers={"Accept": "text/event-stream"})
        deleted = await http.delete(running.url)
    assert response.status_code == deleted.status_code == 405
    assert response.headers["allow"] == "POST"


# --- 17: an AccessKey-only credentials profile ---------------------------------------------------


def test_17_an_access_key_profile_without_a_dashscope_key_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    (home / ".alibabacloud").mkdir(parents=True)
    (home / ".alibabacloud" / "credentials").write_text(
        "[default]\ntype = access_key\naccess_key_id = LTAI-not-a-secret\naccess_key_secret = s3cr3t-value\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path / "out"))
    settings = load_settings()
    assert settings.api_key is None and settings.key_note is not None
    assert "AccessKey credentials but no dashscope_api_key" in settings.key_note

    assert main(["speak", "Hello."]) == 0  # still offline, but it says why
    err = capsys.readouterr().err
    assert "engine: auto: offline" in err and "AccessKey credentials but no dashscope_api_key" in err
    assert "s3cr3t-value" not in err and "LTAI-not-a-secret" not in err

    assert main(["probe", "--text", "hi"]) == 1
    out, err = capsys.readouterr()
    assert "AccessKey credentials but no dashscope_api_key" in err
    assert "AccessKey credentials but no dashscope_api_key" in out  # the JSON report too


# --- 18: the HTTP API's unreachable host ------------------------------------------------------


async def test_18_an_unreachable_http_api_names_its_host() -> None:
    port = closed_port()
    settings = Settings(api_key=SecretStr("sk-secret-1"), http_base_url=f"http://127.0.0.1:{port}/api/v1")
    async with HttpEngine(settings) as engine:
        with pytest.raises(ConnectionFailedError) as caught:
            async for _ in engine.stream(build_request(text="Hi.", voice="Cherry")):
                pass
    assert str(caught.value) == f"Cannot reach the HTTP API at 127.0.0.1:{port} (ConnectError)."


# --- 4: short, escaped quotes in every message and log line ------------------------------------


def test_4_quote_is_short_and_escaped() -> None:
    assert quote("Chery") == "'Chery'"
    assert quote("a\x00b\nc\u200b\ud800'") == "'a\\x00b\\nc\\u200b\\ud800\\''"
    cut = quote("x" * 1_000_000)
    assert cut == "'" + "x" * 80 + "…' (1000000 characters)"
    escaped = quote("\x00" * 1000)
    assert len(escaped) < 120 and "\x00" not in escaped


HUGE = "Q\x00\nforged log line " + "x" * 1_000_000


@pytest.mark.parametrize(
    ("argument", "value"),
    [("model", HUGE), ("voice", HUGE), ("language_type", HUGE), ("filename", HUGE), ("voice", "Ch\nerry")],
)
async def test_4_an_invalid_value_is_quoted_short_in_the_result_and_the_logs(
    argument: str, value: str, emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from mcp import Client

    caplog.set_level(logging.DEBUG)
    environ = {"OUTPUT_DIR": str(tmp_path), "DASHSCOPE_API_KEY": "sk-emulator", "DASHSCOPE_REALTIME_URL": emulator.url}
    server = build_server(load_settings(environ, home=tmp_path))
    async with Client(server) as client:
        result = await client.call_tool("tts_realtime", {"text": "Hello.", "voice": "Cherry", argument: value})
    assert result.is_error
    message = result.content[0].text  # type: ignore[union-attr]
    assert len(message) < 400 and "\n" not in message and "\x00" not in message, message[:500]
    assert emulator.sessions == []  # refused before any call
    for record in caplog.records:
        line = record.getMessage()
        assert len(line) < 1000 and "\x00" not in line and "forged log line" + "x" * 200 not in line


async def test_4_a_voice_clone_id_with_a_newline_or_nul_is_refused_before_any_call(
    emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    for voice in ("my-voice\n2026-01-01 INFO forged", "my\x00voice", "v" * 129):
        with pytest.raises(InvalidRequestError, match="voice must be a voice name or id") as caught:
            build_request(text="Hello.", voice=voice, model="qwen3-tts-vc-realtime-2026-01-15")
        assert "\n" not in str(caught.value) and "\x00" not in str(caught.value)
    assert build_request(text="Hi.", voice="qwen-tts-vc-guanyu-voice-20250812105009984-a4f0",
                         model="qwen3-tts-vc-realtime-2026-01-15").voice.startswith("qwen-tts-vc")  # fmt: skip
    assert build_request(text="Hi.", voice="Ono Anna", model="qwen3-tts-flash-realtime").voice == "Ono Anna"


# --- 5: nothing speakable ---------------------------------------------------------------------


@pytest.mark.parametrize("text", ["\x00", "\u200b" * 10, "\ufeff", "...!?", " \t\n", "\u3000\u3002"])
async def test_5_text_with_nothing_to_speak_is_refused_before_any_call(
    text: str, emulator: Emulator, tmp_path: Path
) -> None:
    from mcp import Client

    environ = {"OUTPUT_DIR": str(tmp_path), "DASHSCOPE_API_KEY": "sk-emulator", "DASHSCOPE_REALTIME_URL": emulator.url}
    async with Client(build_server(load_settings(environ, home=tmp_path))) as client:
        result = await client.call_tool("tts_realtime", {"text": text, "voice": "Cherry"})
    assert result.is_error
    assert "no letter, digit or CJK character" in result.content[0].text  # type: ignore[union-attr]
    assert emulator.sessions == []


@pytest.mark.parametrize("text", ["你", "٣", "Ж", "a", "7"])
def test_5_one_letter_digit_or_cjk_character_is_enough(text: str) -> None:
    assert build_request(text=text, voice="Cherry").text == text


# --- 3: every stdio line gets an answer --------------------------------------------------------

BAD_LINES = {
    "lone surrogate": (b'{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"tts_voices",'
                       b'"arguments":{"model":"\\ud800"}}}', -32700, 11),
    "raw NUL": (b'{"jsonrpc":"2.0","id":12,"method":"ping","params":{"x":"a\x00b"}}', -32700, 12),
    "malformed JSON": (b'{"jsonrpc":"2.0","id":13,"method":', -32700, None),
    "batch": (b'[{"jsonrpc":"2.0","id":14,"method":"ping"}]', -32600, None),
    "string params": (b'{"jsonrpc":"2.0","id":15,"method":"tools/list","params":"x"}', -32600, 15),
    "huge number": (b'{"jsonrpc":"2.0","id":16,"method":"tools/call","params":{"name":"tts_voices",'
                    b'"arguments":{"model":1' + b"0" * 5000 + b"}}}", -32600, 16),
    "float id": (b'{"jsonrpc":"2.0","id":1e999,"method":"ping"}', -32600, None),
    "not an object": (b"42", -32600, None),
}  # fmt: skip


def test_3_every_bad_stdio_line_gets_a_json_rpc_error(tmp_path: Path) -> None:
    import json

    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    lines = [json.dumps(initialize).encode(), b'{"jsonrpc":"2.0","method":"notifications/initialized"}']
    lines += [line for line, _, _ in BAD_LINES.values()]
    lines.append(b'{"jsonrpc":"2.0","id":99,"method":"ping"}')  # the server is still there afterwards
    server = subprocess.Popen(
        [sys.executable, "-m", "alicloud_tts_realtime", "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path), "OUTPUT_DIR": str(tmp_path)},
    )
    assert server.stdin is not None and server.stdout is not None
    replies: list[dict[str, object]] = []
    try:
        server.stdin.write(b"\n".join(lines) + b"\n")
        server.stdin.flush()
        # stdin stays open until the last reply: at EOF the SDK drops replies still pending.
        for _ in range(len(BAD_LINES) + 2):
            line = server.stdout.readline()
            if not line:
                break
            replies.append(json.loads(line))
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        server.stdout.close()
    results = {reply["id"]: reply["result"] for reply in replies if "result" in reply}
    errors = [reply for reply in replies if "error" in reply]  # in the order of the lines
    assert set(results) == {0, 99} and results[99] == {}  # still serving after the bad lines
    assert len(errors) == len(BAD_LINES), replies
    for (name, (_, code, request_id)), reply in zip(BAD_LINES.items(), errors, strict=True):
        assert reply["error"]["code"] == code and reply["id"] == request_id, (name, reply)


# --- 1: slow connections on the HTTP transport --------------------------------------------------


async def _half_sent(port: int, part: bytes) -> anyio.abc.SocketStream:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    if part:
        await stream.send(part)
    return stream


async def _closed_by_server(stream: anyio.abc.SocketStream) -> bytes:
    data = b""
    try:
        while True:
            data += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
        return data


async def test_1_half_sent_requests_are_closed_and_health_answers_throughout(tmp_path: Path) -> None:
    import time

    options = ServerOptions()
    app = build_http_app(build_server(load_settings({}, home=tmp_path), options), options)
    parts = [b"", b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le", b"GET /healthz HTTP/1.1\r\n"]
    parts.append(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")  # headers, half a body
    async with serving_http(app, "127.0.0.1", 0, request_timeout=1.0, max_connections=300) as running:
        port = int(running.base_url.rsplit(":", 1)[1])
        started = time.perf_counter()
        held = [await _half_sent(port, parts[i % len(parts)]) for i in range(200)]
        async with httpx.AsyncClient(timeout=2) as http:
            for _ in range(3):  # while all 200 are held
                assert (await http.get(running.base_url + "/healthz")).status_code == 200
        with anyio.fail_after(4):  # the 1 s deadline, with room for a loaded machine
            for stream in held:
                await _closed_by_server(stream)
        closed_after = time.perf_counter() - started
        async with httpx.AsyncClient(timeout=2) as http:
            assert (await http.get(running.base_url + "/healthz")).status_code == 200
        for stream in held:
            await stream.aclose()
    assert closed_after >= 0.9  # not before their deadline


async def test_1_connections_beyond_the_cap_are_refused_at_once(tmp_path: Path) -> None:
    options = ServerOptions()
    app = build_http_app(build_server(load_settings({}, home=tmp_path), options), options)
    async with serving_http(app, "127.0.0.1", 0, request_timeout=30, max_connections=20) as running:
        port = int(running.base_url.rsplit(":", 1)[1])
        held = [await _half_sent(port, b"GET /heal") for _ in range(20)]
        extra = await _half_sent(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        with anyio.fail_after(1):
            answer = await _closed_by_server(extra)
        assert answer.startswith(b"HTTP/1.1 503 ")
        for stream in [*held, extra]:
            await stream.aclose()
        await anyio.sleep(0.1)  # the held ones are gone: the server takes requests again
        async with httpx.AsyncClient(timeout=2) as http:
            assert (await http.get(running.base_url + "/healthz")).status_code == 200


# --- 7: Host and Origin checks off loopback; the token from a file or the environment ------------


async def test_7_allowed_hosts_and_origins_are_enforced_off_loopback(tmp_path: Path) -> None:
    token = "tok-1234567890"
    options = ServerOptions(
        auth_token=token, allowed_hosts=("tts.example.com",), allowed_origins=("https://app.example.com",)
    )
    # Built as for --host 0.0.0.0, served on loopback for the test.
    app = build_http_app(build_server(load_settings({}, home=tmp_path), options), options, host="0.0.0.0")
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    async with serving_http(app, "127.0.0.1", 0) as running, httpx.AsyncClient(timeout=5) as http:

        async def post(**extra: str) -> int:
            return (await http.post(running.url, json=body, headers=headers | extra)).status_code

        assert await post(Host="evil.example") == 421
        assert await post(Host="tts.example.com:8765", Origin="https://evil.example") == 403
        assert await post(Host="tts.example.com:8765", Origin="https://app.example.com") == 200
        assert await post(Host="tts.example.com") == 200  # no Origin: not a browser
        health = await http.get(running.base_url + "/healthz", headers={"Host": "lb.internal"})
        assert health.status_code == 200  # load balancers use their own names


def test_7_origins_off_loopback_need_allowed_hosts(tmp_path: Path) -> None:
    from alicloud_tts_realtime.errors import ConfigurationError

    options = ServerOptions(auth_token="tok-1234567890", allowed_origins=("https://app.example.com",))
    with pytest.raises(ConfigurationError, match="--allowed-host"):
        build_http_app(build_server(load_settings({}, home=tmp_path), options), options, host="0.0.0.0")


def test_7_the_token_comes_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alicloud_tts_realtime.cli import _build_parser
    from alicloud_tts_realtime.errors import ConfigurationError
    from alicloud_tts_realtime.mcp_server import _options_from_args

    parse = _build_parser().parse_args
    secret = tmp_path / "token"
    secret.write_text("tok-from-file\n")
    args = parse(["serve", "--transport", "http", "--auth-token-file", str(secret), "--allowed-host", "a.example",
                  "--allowed-host", "b.example:443", "--allowed-origin", "https://app.example", "--request-timeout",
                  "3", "--max-connections", "50"])  # fmt: skip
    options = _options_from_args(args)
    assert options.auth_token == "tok-from-file"
    assert options.allowed_hosts == ("a.example", "b.example:443")
    assert options.allowed_origins == ("https://app.example",)
    assert (options.request_timeout, options.max_connections) == (3.0, 50)
    monkeypatch.setenv("TTS_MCP_AUTH_TOKEN", "tok-from-env")
    assert _options_from_args(parse(["serve", "--transport", "http"])).auth_token == "tok-from-env"
    secret.write_text("\n")
    with pytest.raises(ConfigurationError, match="empty"):
        _options_from_args(args)
    with pytest.raises(SystemExit):  # one source at a time
        parse(["serve", "--auth-token", "x", "--auth-token-file", str(secret)])


def test_7_the_readme_shows_the_token_without_putting_it_in_the_command_line_first() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Serve over HTTP", 1)[1]
    first = min(section.index("--auth-token-file"), section.index("TTS_MCP_AUTH_TOKEN="))
    assert "--auth-token " not in section[:first] and "--auth-token=" not in section[:first]
    assert "--allowed-host" in section


# --- 8: one limit per call; the fallback falls back at most once -----------------------------------


async def test_8_speak_timeout_bounds_the_fallback_on_a_slow_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from alicloud_tts_realtime.emulator import EmulatorConfig, serve_emulator

    async with serve_emulator(EmulatorConfig(audio="signal", latency_ms=25000), host="127.0.0.1", port=0) as slow:
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-emulator")
        monkeypatch.setenv("DASHSCOPE_REALTIME_URL", slow.url)
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", slow.http_base_url)
        monkeypatch.setenv("OUTPUT_DIR", str(tmp_path))
        started = time.perf_counter()
        argv = ["speak", "Hello there.", "--engine", "fallback", "--timeout", "1.5"]
        code = await anyio.to_thread.run_sync(main, argv)
        elapsed = time.perf_counter() - started
        upgrades = slow.stats.upgrade_requests
    err = capsys.readouterr().err
    assert code == 1 and "did not finish within the 1.5 s limit (--timeout)" in err, err
    assert 1.4 < elapsed < 4.5  # the limit, with room for a loaded machine; not 122 s
    assert upgrades == 1
    assert not list(tmp_path.rglob("*.wav"))  # nothing half-written


async def test_8_the_fallback_falls_back_at_most_once_per_call(tmp_path: Path) -> None:
    from alicloud_tts_realtime.emulator import EmulatorConfig, serve_emulator
    from alicloud_tts_realtime.engines.fallback import FallbackEngine
    from alicloud_tts_realtime.engines.realtime import RealtimeEngine
    from alicloud_tts_realtime.service import RetryOptions, synthesize

    async with serve_emulator(EmulatorConfig(audio="signal", reject_status=503), host="127.0.0.1", port=0) as refusing:
        settings = Settings(
            api_key=SecretStr("sk-emulator"),
            realtime_url=refusing.url,
            http_base_url=f"http://127.0.0.1:{closed_port()}/api/v1",  # the HTTP API is down too
        )
        engine = FallbackEngine([RealtimeEngine(settings), HttpEngine(settings)])
        async with engine:
            with pytest.raises(ConnectionFailedError, match="HTTP API"):
                await synthesize(
                    build_request(text="Hello.", voice="Cherry"), engine, retry=RetryOptions(max_retries=2, interval=0)
                )
        # Both failures were retryable, yet realtime was tried once and the fallback ran once:
        # retrying the composite would redo realtime and then HTTP, three times each.
        assert refusing.stats.upgrade_requests == 1

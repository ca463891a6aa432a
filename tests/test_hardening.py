"""Issue 14, "Hardening": each test here failed before its fix (the item number is in the name)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest
from pydantic import SecretStr

from alicloud_tts_realtime.cli import main
from alicloud_tts_realtime.emulator import Emulator
from alicloud_tts_realtime.engines.http_sse import HttpEngine
from alicloud_tts_realtime.errors import ConnectionFailedError
from alicloud_tts_realtime.mcp_http import build_http_app, serving_http
from alicloud_tts_realtime.mcp_server import ServerOptions, build_server
from alicloud_tts_realtime.models import build_request
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
        assert f"received {received}" in log, received
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

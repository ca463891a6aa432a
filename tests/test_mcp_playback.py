"""The MCP server's one speaker: streaming playback, the queue, interrupt, tts_stop, and no orphan players.

Fake players on PATH (tests/fake_players.py) record what reached their stdin and when; the server
runs against the emulator, paced where the timing matters.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig
from alicloud_tts_realtime.errors import InvalidStateError
from alicloud_tts_realtime.mcp_server import ServerOptions, build_server
from alicloud_tts_realtime.playback import PlayerFinder
from alicloud_tts_realtime.service import RetryOptions
from alicloud_tts_realtime.settings import Settings, load_settings
from alicloud_tts_realtime.speaker import Speaker
from fake_players import alive, install_fake_player, player_runs, until

pytestmark = pytest.mark.anyio

SENTENCE = "The player hears this sentence from its first chunk, while the rest is made."  # ~3.6 s of audio
OPTIONS = ServerOptions(retry=RetryOptions(max_retries=0))


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(audio="signal", rtf=0.5)  # half real time, like a loaded service


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ``paplay`` first on PATH; returns its log prefix."""
    log = tmp_path / "played"
    install_fake_player(tmp_path / "bin", log, linger=0.4)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return log


def make_settings(tmp_path: Path, emulator: Emulator) -> Settings:
    environ = {
        "OUTPUT_DIR": str(tmp_path / "out"),
        "DASHSCOPE_API_KEY": emulator.config.api_key or "sk-any",
        "DASHSCOPE_REALTIME_URL": emulator.url,
    }
    return load_settings(environ, home=tmp_path)


def wav_pcm(path: str) -> bytes:
    with wave.open(path, "rb") as wav:
        return wav.readframes(wav.getnframes())


async def test_play_is_heard_from_the_first_chunk_and_returns_once_saved(
    tmp_path: Path, emulator: Emulator, log: Path
) -> None:
    async with Client(build_server(make_settings(tmp_path, emulator), OPTIONS)) as client:
        result = await client.call_tool("tts_realtime", {"text": SENTENCE, "voice": "Cherry", "play": True})
        returned = time.monotonic()
        data = result.structured_content
        assert data is not None and not result.is_error, result
        assert (data["playback"], data["player"], data["playback_mode"]) == ("playing", "paplay", "stream")
        assert "Playback: playing with paplay (stream)." in result.content[0].text  # type: ignore[union-attr]
        [run] = player_runs(log)
        # The player had its first byte while the synthesis still had more than a second to go.
        assert run.first is not None and run.first < returned - 1.0
        assert await until(lambda: player_runs(log)[0].done)
        assert player_runs(log)[0].pcm == wav_pcm(data["file_path"])  # every sample, in order


async def test_play_calls_are_heard_in_call_order_never_overlapping(
    tmp_path: Path, emulator: Emulator, log: Path
) -> None:
    texts = ["First of three.", "Second of three, a little longer.", "Third."]
    results: dict[int, Any] = {}
    async with Client(build_server(make_settings(tmp_path, emulator), OPTIONS)) as client:

        async def call(i: int) -> None:
            results[i] = await client.call_tool("tts_realtime", {"text": texts[i], "voice": "Cherry", "play": True})

        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(call, i)
                await anyio.sleep(0.05)  # fixes the call order; the syntheses overlap
        states = [results[i].structured_content["playback"] for i in range(3)]
        assert states[0] == "playing" and states[2] == "queued"
        assert await until(lambda: len(player_runs(log)) == 3 and all(r.done for r in player_runs(log)), 15)
    runs = player_runs(log)
    assert [run.pcm for run in runs] == [wav_pcm(results[i].structured_content["file_path"]) for i in range(3)]
    for before, after in itertools.pairwise(runs):
        assert before.end is not None and after.started > before.end + 0.3  # the one before had lingered out


async def test_tts_stop_silences_the_player_and_cancels_the_running_synthesis(
    tmp_path: Path, emulator: Emulator, log: Path
) -> None:
    outcome: dict[str, Any] = {}
    async with Client(build_server(make_settings(tmp_path, emulator), OPTIONS)) as client:
        idle = await client.call_tool("tts_stop", {})
        assert idle.structured_content == {"stopped": []}

        async def speak() -> None:
            long_text = " ".join([SENTENCE] * 4)  # ~7 s of synthesis: still running when stopped
            outcome["call"] = await client.call_tool(
                "tts_realtime", {"text": long_text, "voice": "Cherry", "play": True}
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(speak)
            assert await until(lambda: any(run.first for run in player_runs(log)))
            stopped = await client.call_tool("tts_stop", {})
        [run] = player_runs(log)
        assert stopped.structured_content == {
            "stopped": [{"text": SENTENCE[:57] + "...", "state": "playing", "synthesis_cancelled": True}]
        }
        assert "synthesis cancelled" in stopped.content[0].text  # type: ignore[union-attr]
        call = outcome["call"]
        assert call.is_error and "Stopped by tts_stop" in call.content[0].text
        assert not run.done and not alive(run.pid)
        assert not list((tmp_path / "out").rglob("*.wav"))  # nothing half-made is left


async def test_interrupt_stops_what_plays_and_plays_this_one_now(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "played"
    install_fake_player(tmp_path / "bin", log, linger=30)  # would sound for 30 s after its input
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    async with Client(build_server(make_settings(tmp_path, emulator), OPTIONS)) as client:
        first = await client.call_tool("tts_realtime", {"text": "One.", "voice": "Cherry", "play": True})
        second = await client.call_tool("tts_realtime", {"text": "Two.", "voice": "Cherry", "play": True})
        assert [r.structured_content["playback"] for r in (first, second)] == ["playing", "queued"]
        now = await client.call_tool(
            "tts_realtime", {"text": "Now.", "voice": "Cherry", "play": True, "interrupt": True}
        )
        assert now.structured_content["playback"] == "playing"
        runs = player_runs(log)
        assert len(runs) == 2 and not alive(runs[0].pid)  # the second never started
        assert await until(lambda: player_runs(log)[1].done)
        assert player_runs(log)[1].pcm == wav_pcm(now.structured_content["file_path"])
    assert not any(alive(run.pid) for run in player_runs(log))  # the server's exit stops the last one


async def test_the_queue_holds_at_most_max_queued(tmp_path: Path) -> None:
    install_fake_player(tmp_path / "bin", tmp_path / "played", linger=30)
    async with Speaker(PlayerFinder(str(tmp_path / "bin")), max_queued=2) as speaker:
        turns = [await speaker.turn(24000, f"turn {i}") for i in range(3)]
        assert [turn.state for turn in turns] == ["playing", "queued", "queued"]
        with pytest.raises(InvalidStateError, match="already has 2 playbacks queued"):
            await speaker.turn(24000, "one too many")
        interrupting = await speaker.turn(24000, "now", interrupt=True)
        assert interrupting.state == "playing" and [turn.state for turn in turns] == ["stopped"] * 3
    assert interrupting.playback is not None and interrupting.playback.done


# --- the stdio server in a subprocess ------------------------------------------------------------


def _rpc(process: subprocess.Popen[str], message: dict[str, Any]) -> None:
    assert process.stdin is not None
    process.stdin.write(json.dumps(message) + "\n")
    process.stdin.flush()


def _answer(process: subprocess.Popen[str], request_id: int) -> dict[str, Any]:
    assert process.stdout is not None
    while True:
        line = process.stdout.readline()
        assert line, "the server closed stdout"
        data = json.loads(line)
        if data.get("id") == request_id:
            return data


@pytest.mark.parametrize("ending", ["eof", "sigterm"])
async def test_no_player_survives_the_stdio_server(tmp_path: Path, ending: str) -> None:
    log = tmp_path / "played"
    install_fake_player(tmp_path / "bin", log, linger=60)
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "OUTPUT_DIR": str(tmp_path / "out"),
        "HOME": str(tmp_path),
    }
    env.pop("DASHSCOPE_API_KEY", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "alicloud_tts_realtime", "serve", "--engine", "offline"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        _rpc(
            process,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                },
            },
        )
        assert "result" in _answer(process, 1)
        _rpc(process, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        for i in range(2):
            _rpc(
                process,
                {
                    "jsonrpc": "2.0",
                    "id": 2 + i,
                    "method": "tools/call",
                    "params": {
                        "name": "tts_realtime",
                        "arguments": {"text": f"Call {i}.", "voice": "Cherry", "play": True},
                    },
                },
            )
            answer = _answer(process, 2 + i)
            assert answer["result"]["structuredContent"]["playback"] in ("playing", "queued"), answer
        assert await until(lambda: len(player_runs(log)) == 1)
        [run] = player_runs(log)
        assert alive(run.pid)
        if ending == "eof":
            assert process.stdin is not None
            process.stdin.close()
            assert process.wait(timeout=15) == 0
        else:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == -signal.SIGTERM
        assert await until(lambda: not alive(run.pid), 3)
        assert len(player_runs(log)) == 1  # the queued one never started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()

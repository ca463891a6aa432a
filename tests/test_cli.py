"""The CLI in-process with argv lists, and end to end in subprocesses (emulator + speak)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from alicloud_tts_realtime.cli import main
from speech_features import assert_speech_like


def read_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.readframes(wav.getnframes()), wav.getframerate()


def test_speak_offline_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path))
    assert main(["speak", "Hello from the command line.", "--sample-rate", "16000"]) == 0
    out, err = capsys.readouterr()
    path = Path(out.strip())
    assert path.is_absolute() and path.parent == tmp_path / "ai-audio-tts-realtime" / "audio"
    pcm, rate = read_wav(path)
    assert rate == 16000
    assert_speech_like(pcm, rate)
    assert "engine: auto: offline" in err and "no DashScope API key" in err


def test_speak_json_to_an_explicit_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "nested" / "hi.wav"
    assert main(["speak", "你好。", "--voice", "Ethan", "--json", "--chunks", "--output", str(target)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["file_path"] == str(target) and target.is_file()
    assert (data["engine"], data["voice"], data["finish_reason"], data["sample_rate"]) == (
        "offline",
        "Ethan",
        "stop",
        24000,
    )
    assert data["audio_base64_pcm_chunks"] and data["duration_ms"] > 300


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["speak", "hi", "--voice", "Chery"], "Did you mean 'Cherry'"),
        (["speak", "   "], "text must contain something"),
        (["speak", "hi", "--engine", "realtime"], "No DashScope API key"),
        (["speak", "hi", "--instruction", "calm", "--model", "qwen3-tts-flash-realtime"], "does not accept"),
        (["voices", "--model", "qwen3-tts-flash"], "HTTP-only"),
    ],
)
def test_local_errors_exit_2_with_one_line(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path))
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ai-audio-tts-realtime").exists()  # nothing half-written


def test_an_unwritable_output_exits_2_before_synthesis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["speak", "hi", "--output", str(blocker / "x.wav")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[-1] == (
        f"error: Cannot write audio to {blocker}: it is a file, not a directory. "
        "Set OUTPUT_DIR to a writable directory or choose another output path."
    )


def test_voices(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["voices", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    models = {m["model"]: m for m in data["models"]}
    assert models["qwen3-tts-instruct-flash-realtime"]["takes_instruction"] is True
    assert "Cherry" in models["qwen3-tts-flash-realtime"]["voices"]
    assert main(["voices", "--model", "qwen-tts-realtime"]) == 0
    assert "Cherry, Serena, Ethan, Chelsie" in capsys.readouterr().out


# --- subprocesses ---------------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alicloud_tts_realtime", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def running_emulator(tmp_path: Path, *options: str) -> Iterator[tuple[str, dict[str, str]]]:
    """``alicloud-tts-realtime emulator --port 0 …`` in a subprocess; yields its URL and a client env."""
    env = {**os.environ, "OUTPUT_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "alicloud_tts_realtime", "emulator", "--port", "0", "--audio", "signal", *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("DashScope emulator ready: realtime ws://127.0.0.1:"), line
        ready = dict(process.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert ready["DASHSCOPE_REALTIME_URL"] == line.split()[-1]
        yield ready["DASHSCOPE_REALTIME_URL"], env | ready
    finally:
        process.terminate()
        process.communicate(timeout=10)


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    with running_emulator(tmp_path) as served:
        yield served


def test_end_to_end_through_the_emulator(emulator_process: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    _, env = emulator_process
    done = cli("speak", "Through the realtime protocol.", "--json", env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["engine"] == "realtime" and data["session_id"].startswith("sess_")
    assert data["characters"] == len("Through the realtime protocol.")
    assert "auto: realtime, because an API key is configured (env DASHSCOPE_API_KEY)" in done.stderr
    assert read_wav(Path(data["file_path"]))[1] == 24000

    started = time.perf_counter()
    nested = tmp_path / "new" / "deeper" / "hi.wav"
    refused = cli("speak", "hi", "--output", str(nested), env={**env, "DASHSCOPE_API_KEY": "sk-wrong-key-000"})
    assert refused.returncode == 1
    assert not (tmp_path / "new").exists()  # no empty folders left behind
    assert refused.stderr.splitlines()[-1].startswith("error: The service refused the API key (HTTP 401")
    assert "sk-wrong-key-000" not in refused.stderr
    assert time.perf_counter() - started < 10  # includes interpreter start-up; the refusal itself takes ms


def test_the_sdk_engine_speaks_without_library_noise(emulator_process: tuple[str, dict[str, str]]) -> None:
    done = cli("speak", "Through the official SDK.", "--engine", "sdk", env=emulator_process[1])
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["engine: sdk: requested"]  # not websocket-client's close log
    assert read_wav(Path(done.stdout.strip()))[1] == 24000


def test_the_emulators_fault_options_reach_the_client(tmp_path: Path) -> None:
    with running_emulator(tmp_path, "--reject-status", "503") as (_, env):
        refused = cli("speak", "Refused.", env=env)
        assert refused.returncode == 1
        assert refused.stderr.splitlines()[-1].startswith(
            "error: The service refused the connection with HTTP 503: The service is unavailable, please try "
            "again later (status=503, code=ServiceUnavailable, request_id="
        ), refused.stderr
        fallback = cli("speak", "Spoken over HTTP instead.", "--engine", "fallback", "--json", env=env)
        assert fallback.returncode == 0, fallback.stderr
        assert json.loads(fallback.stdout)["engine"] == "http"
    with running_emulator(tmp_path, "--throttle") as (_, env):
        throttled = cli("speak", "Throttled.", env=env)
        assert throttled.returncode == 1
        assert throttled.stderr.splitlines()[-1].startswith(
            "error: The service is throttling requests (close 1011: To many requests."
        ), throttled.stderr


def test_help_works_without_anything(tmp_path: Path) -> None:
    done = cli("--help", env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)})
    assert done.returncode == 0 and "speak" in done.stdout and "emulator" in done.stdout


# --- playback -------------------------------------------------------------------------------------

PARAGRAPH = "The player hears this sentence from its first chunk, while the rest is made."


def test_play_streams_to_the_player_while_the_synthesis_goes_on(tmp_path: Path) -> None:
    from fake_players import alive, install_fake_player, player_runs

    log = tmp_path / "played"
    install_fake_player(tmp_path / "bin", log)
    with running_emulator(tmp_path, "--rtf", "0.5") as (_, env):
        env = {**env, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"}
        done = cli("speak", PARAGRAPH, "--play", env=env)
        assert done.returncode == 0, done.stderr
        assert "playback: paplay (stream)" in done.stderr
        wav = Path(done.stdout.strip())
        pcm, rate = read_wav(wav)
        [run] = player_runs(log)
        assert (
            run.done and run.pcm == pcm and run.argv[1:] == ["--raw", "--format=s16le", "--rate=24000", "--channels=1"]
        )
        # The first byte reached the player well before the synthesis ended and the file was written.
        first = (tmp_path / f"played.{run.pid}.first").stat().st_mtime
        assert len(pcm) / 2 / rate > 2 and first < wav.stat().st_mtime - 0.5
        assert not alive(run.pid)

        unsaved = cli("speak", "Only heard.", "--play", "--no-save", env=env)
        assert unsaved.returncode == 0, unsaved.stderr
        assert unsaved.stdout == "" and len(list(tmp_path.rglob("*.wav"))) == 1
        assert len(player_runs(log)) == 2 and player_runs(log)[1].bytes > 0

        refused = cli("speak", "hi", "--no-save", env=env)
        assert refused.returncode == 2 and "--no-save needs --play" in refused.stderr


def test_speak_markdown_sends_the_speakable_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path))
    markdown = "# Hi\n\nSee **[the docs](https://example.com/a/b)** 🎉"
    assert main(["speak", markdown, "--markdown", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["text_characters"] == len("Hi\n\nSee the docs") and Path(data["file_path"]).is_file()
    assert main(["speak", markdown, "--json"]) == 0  # without --markdown the text goes as written
    assert json.loads(capsys.readouterr().out)["text_characters"] == len(markdown)


def test_speak_markdown_with_nothing_to_read_exits_2_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A key and an endpoint where nothing listens: a connection attempt would fail with exit 1.
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-unused")
    monkeypatch.setenv("DASHSCOPE_REALTIME_URL", "ws://127.0.0.1:9/api-ws/v1/realtime")
    assert main(["speak", "```\nprint(1)\n```", "--markdown", "--engine", "realtime"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "nothing to speak once its Markdown is removed" in err and len(err.splitlines()) == 1
    assert list(tmp_path.rglob("*.wav")) == []

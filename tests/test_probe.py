"""``scripts/realtime_tts_demo.py`` in a subprocess against the emulator: one JSON line, exit codes.

Exit codes (``alicloud_tts_realtime.probe``): 0 when the realtime probe passed or, without
``--strict``, the fallback produced audio; 2 with ``--strict`` when realtime failed; 1 when no
audio came out or the configuration is wrong.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import sys
import sysconfig
import wave
from pathlib import Path
from typing import Any

import anyio
import pytest

from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig, serve_emulator
from speech_features import assert_speech_like

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "realtime_tts_demo.py"
TEXT = "realtime health check"


class Run:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    @property
    def report(self) -> dict[str, Any]:
        lines = self.stdout.splitlines()
        assert len(lines) == 1, self.stdout  # exactly one line of JSON
        data: dict[str, Any] = json.loads(lines[0])
        return data


def environment(tmp_path: Path, emulator: Emulator | None = None, **extra: str) -> dict[str, str]:
    env = {"HOME": str(tmp_path), "OUTPUT_DIR": str(tmp_path / "out"), "PATH": os.environ.get("PATH", "")}
    if emulator is not None:
        env |= {
            "DASHSCOPE_API_KEY": str(emulator.config.api_key),
            "DASHSCOPE_REALTIME_URL": emulator.url,
            "DASHSCOPE_HTTP_BASE_URL": emulator.http_base_url,
        }
    return env | extra


async def run(env: dict[str, str], *args: str, command: list[str] | None = None) -> Run:
    command = command or [sys.executable, str(SCRIPT)]
    with anyio.fail_after(30):
        result = await anyio.run_process([*command, *args], env=env, check=False)
    run = Run(result.returncode, result.stdout.decode(), result.stderr.decode())
    assert "Traceback" not in run.stderr, run.stderr
    return run


def wav_pcm(path: Path | str) -> bytes:
    with wave.open(str(path)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 24000)
        return reader.readframes(reader.getnframes())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def refusing() -> Any:
    """An emulator whose realtime endpoint refuses every upgrade (HTTP 503); its HTTP API works."""
    async with serve_emulator(EmulatorConfig(audio="signal", reject_status=503)) as emulator:
        yield emulator


async def test_strict_probe_passes_and_saves_speech(emulator: Emulator, tmp_path: Path) -> None:
    result = await run(environment(tmp_path, emulator), "--text", TEXT, "--strict")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    probe = result.report["realtime_probe"]
    assert "fallback" not in result.report
    assert probe["ok"] is True and probe["error"] is None
    assert probe["model"] == "qwen3-tts-instruct-flash-realtime" and probe["stage"] == "session.finished"
    assert probe["chunk_count"] > 3 and 0 <= probe["first_audio_ms"] <= probe["total_ms"]
    assert probe["characters"] == len(TEXT) and probe["session_id"].startswith("sess_")
    saved = tmp_path / "out" / "ai-audio-tts-realtime" / "audio" / "probe.wav"
    assert probe["output"] == str(saved)
    assert_speech_like(wav_pcm(saved), 24000)
    runtime = probe["runtime"]
    assert runtime["python"] == platform.python_version() and runtime["websockets"]
    assert runtime["dashscope"]  # installed here
    sdk = runtime["sdk_session"]
    assert sdk["ok"] is True and sdk["stage"] == "session.finished" and sdk["chunk_count"] == probe["chunk_count"]
    assert sdk["connect_ms"] is not None and sdk["first_audio_ms"] >= sdk["connect_ms"]
    assert [r.user_agent.split("/")[0] for r in emulator.sessions if r.user_agent] == [
        "alicloud-ai-audio-tts-realtime",
        "dashscope",
    ]


async def test_fallback_speaks_when_the_realtime_endpoint_refuses(refusing: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "X.wav"
    result = await run(environment(tmp_path, refusing), "--text", TEXT, "--fallback", "--output", str(out))
    assert result.returncode == 0, result.stderr
    report = result.report
    probe, fallback = report["realtime_probe"], report["fallback"]
    assert probe["ok"] is False and probe["stage"] == "credentials"
    assert probe["error"]["type"] == "ServiceError" and probe["error"]["status"] == 503
    assert probe["runtime"]["sdk_session"]["ok"] is False  # the SDK is refused the same way
    assert fallback["ok"] is True and fallback["error"] is None and fallback["engine"] == "http"
    assert fallback["model"] == "qwen3-tts-flash" and fallback["output"] == str(out)
    assert fallback["chunk_count"] > 3 and fallback["request_id"]
    assert_speech_like(wav_pcm(out), 24000)
    assert len(result.stderr.splitlines()) == 1 and "fallback produced" in result.stderr
    # stderr names the stage the JSON names (issue 14, item 15)
    assert result.stderr.startswith("realtime probe failed after stage credentials: The service refused")


async def test_strict_fails_with_2_even_when_the_fallback_works(refusing: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "strict.wav"
    args = ("--text", TEXT, "--instruction", "calm", "--fallback", "--strict", "--output", str(out))
    result = await run(environment(tmp_path, refusing), *args)
    assert result.returncode == 2
    fallback = result.report["fallback"]
    assert fallback["ok"] is True and fallback["model"] == "qwen3-tts-instruct-flash"  # the instruction decides
    assert out.exists()


async def test_no_audio_without_fallback_exits_1(refusing: Emulator, tmp_path: Path) -> None:
    result = await run(environment(tmp_path, refusing), "--text", TEXT, "--no-sdk-check")
    assert result.returncode == 1
    assert "fallback" not in result.report and result.report["realtime_probe"]["ok"] is False
    assert result.report["realtime_probe"]["runtime"]["sdk_session"] == {"ok": None, "skipped": "--no-sdk-check"}
    assert len(result.stderr.splitlines()) == 1 and "503" in result.stderr


async def test_a_fallback_network_error_is_reported_not_raised(refusing: Emulator, tmp_path: Path) -> None:
    env = environment(tmp_path, refusing, DASHSCOPE_HTTP_BASE_URL=f"http://127.0.0.1:{closed_port()}/api/v1")
    result = await run(env, "--text", TEXT, "--fallback", "--no-sdk-check")
    assert result.returncode == 1
    error = result.report["fallback"]["error"]
    assert error["type"] == "ConnectionFailedError" and error["retryable"] is True
    assert result.report["fallback"]["output"] is None
    assert result.report["realtime_probe"]["error"]["status"] == 503  # the realtime result survives
    assert len(result.stderr.splitlines()) == 1, result.stderr  # the retry's warning stays quiet


async def test_a_fallback_that_cannot_work_is_refused_before_the_realtime_session(
    emulator: Emulator, tmp_path: Path
) -> None:
    args = ("--text", TEXT, "--instruction", "calm", "--fallback", "--fallback-model", "qwen3-tts-flash")
    result = await run(environment(tmp_path, emulator), *args)
    assert result.returncode == 1
    error = result.report["realtime_probe"]["error"]
    assert error["type"] == "InvalidRequestError" and "does not accept an instruction" in error["message"]
    assert not emulator.sessions  # nothing was sent


async def test_a_missing_key_is_a_configuration_error_with_a_hint(tmp_path: Path) -> None:
    result = await run(environment(tmp_path), "--text", TEXT, "--strict", "--fallback")
    assert result.returncode == 1
    probe = result.report["realtime_probe"]
    assert probe["ok"] is False and probe["stage"] is None and probe["error"]["type"] == "ConfigurationError"
    assert "fallback" not in result.report  # nothing to try without a key
    assert result.stderr.count("\n") == 1 and "DASHSCOPE_API_KEY" in result.stderr
    assert "alicloud-tts-realtime emulator" in result.stderr and "offline engine" not in result.stderr


async def test_an_invalid_request_is_a_configuration_error(emulator: Emulator, tmp_path: Path) -> None:
    result = await run(environment(tmp_path, emulator), "--text", TEXT, "--voice", "Nobody")
    assert result.returncode == 1 and result.report["realtime_probe"]["error"]["type"] == "InvalidRequestError"
    assert not emulator.sessions  # nothing was sent


async def test_runs_from_a_copy_of_the_skill_folder_without_the_package_installed(
    emulator: Emulator, tmp_path: Path
) -> None:
    copy = tmp_path / "skill-copy"
    shutil.copytree(ROOT / "skill" / "alicloud_tts_realtime", copy / "skill" / "alicloud_tts_realtime",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (copy / "scripts").mkdir()
    shutil.copy(SCRIPT, copy / "scripts")
    # -S skips site-packages; a folder of links to everything in it but this package (installed
    # editable or not) keeps the dependencies reachable on PYTHONPATH.
    deps = tmp_path / "deps"
    deps.mkdir()
    for folder in {Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}:
        for entry in folder.iterdir():
            own = entry.name.startswith(("alicloud_tts_realtime", "alicloud_ai_audio_tts_realtime", "__editable__"))
            if not own and entry.suffix != ".pth" and not (deps / entry.name).exists():
                (deps / entry.name).symlink_to(entry)
    env = environment(tmp_path, emulator, PYTHONPATH=str(deps))
    python = [sys.executable, "-S"]
    hidden = await anyio.run_process([*python, "-c", "import alicloud_tts_realtime"], env=env, check=False)
    assert hidden.returncode != 0  # the package really is not installed for this interpreter
    result = await run(
        env, "--text", TEXT, "--strict", command=[*python, str(copy / "scripts" / "realtime_tts_demo.py")]
    )
    assert result.returncode == 0, result.stderr
    assert result.report["realtime_probe"]["ok"] is True


async def test_a_missing_dependency_is_named_with_the_install_command(emulator: Emulator, tmp_path: Path) -> None:
    # sys.modules[name] = None makes "import websockets…" fail, as in a Python without the dependencies.
    code = (
        "import runpy, sys; sys.modules['websockets'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    command = [sys.executable, "-c", code, str(SCRIPT)]
    result = await run(environment(tmp_path, emulator), "--text", TEXT, "--no-sdk-check", command=command)
    assert result.returncode == 1
    assert result.report["realtime_probe"]["error"]["type"] == "EngineUnavailableError"
    # The package is not on PyPI: the hint installs the folder itself (issue 14, item 16).
    folder = SCRIPT.absolute().parent.parent
    assert result.stderr == (
        f"error: missing Python package 'websockets'; install the skill folder with its dependencies: pip install -e "
        f"'{folder}[offline]' (or run it without installing: uvx --from {folder} alicloud-tts-realtime …)\n"
    )
    assert "pip install alicloud-ai-audio-tts-realtime" not in result.stderr


async def test_help_needs_no_key_and_no_sdk(tmp_path: Path) -> None:
    # sys.modules[name] = None makes "import dashscope" fail, as if the SDK were not installed.
    code = (
        "import runpy, sys; sys.modules['dashscope'] = None; sys.argv = [sys.argv[1], '--help']; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    result = await run(environment(tmp_path), str(SCRIPT), command=[sys.executable, "-c", code])
    assert result.returncode == 0
    assert "--fallback" in result.stdout and "Exit codes" in result.stdout


async def test_the_cli_probe_subcommand(emulator: Emulator, tmp_path: Path) -> None:
    args = ("probe", "--text", TEXT, "--strict", "--no-sdk-check", "--model", "qwen3-tts-flash-realtime")
    result = await run(environment(tmp_path, emulator), *args, command=[sys.executable, "-m", "alicloud_tts_realtime"])
    assert result.returncode == 0, result.stderr
    probe = result.report["realtime_probe"]
    assert probe["ok"] is True and probe["model"] == "qwen3-tts-flash-realtime"
    assert probe["runtime"]["sdk_session"]["skipped"] == "--no-sdk-check"

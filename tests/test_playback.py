"""Streaming playback with fake players on PATH: what they are given, in which order, and how they end."""

from __future__ import annotations

import asyncio
import os
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alicloud_tts_realtime.playback import START_WINDOW_S, FilePlayback, PipePlayback, PlayerFinder, PortAudioPlayback
from fake_players import alive, install_fake_player, install_shell_player, player_runs, until

pytestmark = pytest.mark.anyio

PCM = bytes(range(256)) * 40  # 10 kB of whole samples, easy to check for order
FAKES = Path(__file__).resolve().parent / "fakes"  # a fake sounddevice module (PortAudio)


def chunks_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def test_a_stdin_player_gets_every_byte_in_order(tmp_path: Path) -> None:
    log = tmp_path / "log"
    install_fake_player(tmp_path / "bin", log)
    playback = await PlayerFinder(str(tmp_path / "bin")).open(24000)
    assert isinstance(playback, PipePlayback) and (playback.player, playback.mode) == ("paplay", "stream")
    await playback.start()
    for chunk in chunks_of(PCM, 999):  # odd sizes: the pipe, not the chunks, decides the reads
        await playback.write(chunk)
    await playback.close()
    await asyncio.wait_for(playback.finished(), 10)
    [run] = player_runs(log)
    assert run.done and run.pcm == PCM and playback.bytes_played == len(PCM) and playback.error is None
    assert run.argv[1:] == ["--raw", "--format=s16le", "--rate=24000", "--channels=1"]
    assert playback.first_byte_at is not None and run.first is not None and run.first >= playback.first_byte_at
    assert not alive(run.pid)


async def test_writes_never_wait_for_a_slow_player(tmp_path: Path) -> None:
    log = tmp_path / "log"
    install_fake_player(tmp_path / "bin", log, delay=0.05, read_size=4096)
    playback = await PlayerFinder(str(tmp_path / "bin")).open(24000)
    assert playback is not None
    await playback.start()
    data = os.urandom(2_000_000)  # ~40 s of 24 kHz audio; the pipe holds 64 kB
    parts = chunks_of(data, 9600)
    await playback.write(parts[0])
    assert await until(lambda: any(run.first for run in player_runs(log)))  # the player is reading
    for chunk in parts[1:]:
        await playback.write(chunk)
    await playback.close()
    # Every write returned while the player had taken only a small part of the audio.
    assert playback.bytes_played < len(data) // 2
    await playback.stop()
    [run] = player_runs(log)
    assert not run.done and not alive(run.pid)


async def test_stop_ends_the_player_and_its_process_group(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    pid_file = tmp_path / "child.pid"
    # a player that leaves a child of its own, in its group
    install_shell_player(bin_dir, "paplay", f"sleep 60 &\necho $! > {pid_file}\ncat > /dev/null\nwait\n")
    playback = await PlayerFinder(str(bin_dir)).open(16000)
    assert playback is not None
    await playback.start()
    await playback.write(PCM)
    assert await until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    child = int(pid_file.read_text())
    await playback.stop()
    assert playback.done and playback.stopped
    assert await until(lambda: not alive(child), 3)


async def test_a_player_that_fails_is_reported(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    install_shell_player(bin_dir, "aplay", "echo 'aplay: audio open error' >&2\nexit 1\n")
    playback = await PlayerFinder(str(bin_dir)).open(24000)
    assert playback is not None and playback.player == "aplay"
    assert isinstance(playback, PipePlayback) and playback.argv[-1] == "-" and "S16_LE" in playback.argv
    await playback.start()
    await playback.write(PCM)
    await playback.close()
    await asyncio.wait_for(playback.finished(), 5)
    assert playback.error is not None and "aplay exited with status 1" in playback.error


async def test_a_player_that_cannot_start_hands_all_the_audio_to_the_next(tmp_path: Path) -> None:
    # paplay with no PulseAudio server exits at once; aplay, found next, plays the audio from its start.
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    install_fake_player(bin_dir, log, name="aplay")
    install_shell_player(bin_dir, "paplay", "echo 'Connection failure: Connection refused' >&2\nexit 1\n")
    playback = await PlayerFinder(str(bin_dir)).open(24000)
    assert isinstance(playback, PipePlayback) and playback.player == "paplay"
    await playback.start()
    for chunk in chunks_of(PCM, 999):
        await playback.write(chunk)
        await asyncio.sleep(0.005)  # some chunks reach paplay before it is seen to have gone
    await playback.close()
    await asyncio.wait_for(playback.finished(), 10)
    [run] = player_runs(log)
    assert run.pcm == PCM and playback.player == "aplay" and playback.error is None
    assert playback.bytes_played == len(PCM) and "S16_LE" in playback.argv


async def test_a_player_that_fails_after_its_start_is_not_replaced(tmp_path: Path) -> None:
    # Past START_WINDOW_S its audio may have been heard: no other player repeats it.
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    install_fake_player(bin_dir, log, name="aplay")
    install_shell_player(bin_dir, "paplay", "head -c 100 > /dev/null\nsleep 0.8\nexit 1\n")
    playback = await PlayerFinder(str(bin_dir)).open(24000)
    assert playback is not None
    await playback.start()
    await playback.write(PCM[:1000])
    await asyncio.sleep(START_WINDOW_S + 0.1)
    await playback.write(PCM[1000:])
    await playback.close()
    await asyncio.wait_for(playback.finished(), 10)
    assert player_runs(log) == [] and playback.player == "paplay"
    assert playback.error is not None and "paplay exited with status 1" in playback.error


async def test_when_every_player_fails_the_error_names_each(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    for name in ("paplay", "aplay"):
        install_shell_player(bin_dir, name, "exit 1\n")
    playback = await PlayerFinder(str(bin_dir)).open(24000)
    assert playback is not None
    await playback.start()
    await playback.write(PCM)
    await playback.close()
    await asyncio.wait_for(playback.finished(), 10)
    assert playback.error is not None
    assert "paplay exited with status 1" in playback.error and "aplay exited with status 1" in playback.error


@pytest.mark.parametrize(
    ("help_text", "expected"),
    [
        ("-sample_rate <int> .D\n-channels <int> .D\n-ch_layout <chlayout> .D\n", ["-ar", "24000", "-ac", "1"]),
        ("-sample_rate <int> .D\n-ch_layout <chlayout> .D\n", ["-sample_rate", "24000", "-ch_layout", "mono"]),
    ],
)
async def test_ffplay_options_follow_the_installed_version(tmp_path: Path, help_text: str, expected: list[str]) -> None:
    bin_dir = tmp_path / "bin"
    calls = tmp_path / "calls"
    install_shell_player(bin_dir, "ffplay", f"echo x >> {calls}\nprintf '%s' '{help_text}'\n")
    finder = PlayerFinder(str(bin_dir), portaudio=False)
    first, second = await finder.open(24000), await finder.open(24000)
    assert isinstance(first, PipePlayback) and isinstance(second, PipePlayback)
    argv = first.argv[1:]
    assert argv[:2] == ("-f", "s16le") and list(argv[2:6]) == expected
    assert {"-nodisp", "-autoexit"} <= set(argv) and argv[-1] == "-"
    assert calls.read_text().count("x") == 1  # probed once per finder


async def test_stdin_players_come_first_then_portaudio_then_file_players(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    for name in ("afplay", "play", "aplay"):
        install_fake_player(bin_dir, tmp_path / "log", name=name)
    playback = await PlayerFinder(str(bin_dir)).open(24000)
    assert playback is not None and playback.player == "aplay"
    (bin_dir / "aplay").unlink()
    playback = await PlayerFinder(str(bin_dir)).open(24000)
    assert playback is not None and playback.player == "play" and playback.mode == "stream"
    (bin_dir / "play").unlink()
    playback = await PlayerFinder(str(bin_dir), portaudio=True).open(24000)
    assert playback is not None and (playback.player, playback.mode) == ("sounddevice", "stream")
    playback = await PlayerFinder(str(bin_dir), portaudio=False).open(24000)
    assert isinstance(playback, FilePlayback) and (playback.player, playback.mode) == ("afplay", "file")
    assert await PlayerFinder(str(tmp_path / "empty"), portaudio=False).open(24000) is None


async def test_a_file_player_gets_the_finished_wav(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    copy = tmp_path / "copy.wav"
    install_shell_player(bin_dir, "afplay", f'cp "$1" {copy}\n')
    playback = await PlayerFinder(str(bin_dir), portaudio=False).open(16000)
    assert isinstance(playback, FilePlayback)
    await playback.start()
    for chunk in chunks_of(PCM, 1000):
        await playback.write(chunk)
    await playback.close()
    await asyncio.wait_for(playback.finished(), 5)
    with wave.open(str(copy), "rb") as wav:
        assert wav.getframerate() == 16000 and wav.readframes(wav.getnframes()) == PCM
    assert playback.error is None and not list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"tts-play-*{os.getpid()}"))


@pytest.fixture
def fake_sounddevice(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    import sounddevice  # type: ignore[import-not-found,unused-ignore]

    yield sounddevice
    sys.modules.pop("sounddevice", None)


async def test_portaudio_plays_every_byte_in_order_from_its_callback(tmp_path: Path, fake_sounddevice: Any) -> None:
    playback = await PlayerFinder(str(tmp_path / "empty")).open(24000)  # no stdin player; the module is found
    assert isinstance(playback, PortAudioPlayback) and (playback.player, playback.mode) == ("sounddevice", "stream")
    await playback.start()
    first, second = PCM[:5000], PCM[5000:]
    for chunk in chunks_of(first, 999):  # blocks of 960 bytes are pulled: chunks are cut and joined
        await playback.write(chunk)
    await asyncio.sleep(0.05)  # the device runs dry meanwhile: silence, then the rest
    await playback.write(second)
    await playback.close()
    await asyncio.wait_for(playback.finished(), 10)
    [stream] = fake_sounddevice.streams
    played = bytes(stream.played)
    assert played.index(first) < played.index(second, played.index(first) + len(first))
    assert playback.bytes_played == len(PCM) and playback.error is None and playback.first_byte_at is not None
    assert stream.samplerate == 24000 and stream.stopped and stream.closed


async def test_stopping_portaudio_ends_its_stream_at_once(tmp_path: Path, fake_sounddevice: Any) -> None:
    playback = await PlayerFinder(str(tmp_path / "empty")).open(16000)
    assert isinstance(playback, PortAudioPlayback)
    await playback.start()
    await playback.write(os.urandom(16000 * 2 * 60))  # a minute of audio, far more than plays before stop
    await asyncio.sleep(0.05)
    await asyncio.wait_for(playback.stop(), 2)
    [stream] = fake_sounddevice.streams
    assert playback.done and stream.stopped and stream.closed and len(stream.played) < 16000 * 2 * 60

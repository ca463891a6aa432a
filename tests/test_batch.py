"""Batch synthesis: input validation, the manifest, resuming after SIGINT and kill -9, pacing, progress.

The end-to-end tests run the real CLI in a subprocess against an emulator served in this process,
so the test can watch the sockets it holds open while the batch runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import os
import signal
import sys
import time
import wave
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from alicloud_tts_realtime.batch import (
    MANIFEST_NAME,
    BatchItem,
    BatchTally,
    ItemResult,
    Ledger,
    Pacer,
    check_input,
    read_input,
    synthesize_batch,
)
from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig, Fault, serve_emulator
from alicloud_tts_realtime.engines.offline import OfflineEngine
from alicloud_tts_realtime.engines.realtime import RealtimeEngine
from alicloud_tts_realtime.errors import ConfigurationError, InvalidInputError, InvalidRequestError
from alicloud_tts_realtime.progress import progress_line, show_progress
from alicloud_tts_realtime.service import RetryOptions
from alicloud_tts_realtime.settings import Settings
from timed_engine import TimedEngine

pytestmark = pytest.mark.anyio

KEY = "sk-emulator"
TEXTS = ["Good morning.", "The quick brown fox.", "Batch number {n}.", "One more short line.", "Hello again."]


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    # Paced a little, so that items are in flight when the batch is interrupted; like a personal
    # account, a fourth connection at once would be refused (HTTP 429).
    return EmulatorConfig(audio="signal", latency_ms=30, rtf=0.15, max_connections=3)


def write_input(path: Path, count: int, **extra: Any) -> list[dict[str, Any]]:
    rows = [{"id": f"item-{n:03d}", "text": TEXTS[n % len(TEXTS)].format(n=n), **extra} for n in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return rows


def manifest(directory: Path) -> list[dict[str, Any]]:
    path = directory / MANIFEST_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def check_wav(path: Path, duration_ms: int, rate: int = 24000) -> None:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, rate)
        frames = wav.getnframes()
    assert frames > 0
    assert abs(frames / rate * 1000 - duration_ms) <= 1
    assert 300 <= duration_ms <= 5000  # a short sentence


def settings_for(emulator: Emulator) -> Settings:
    return Settings(api_key=SecretStr(KEY), key_source="test", realtime_url=emulator.url)


def cli_env(emulator: Emulator, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASHSCOPE_", "ALIBABA_CLOUD_", "ALICLOUD_"))}
    return env | {"DASHSCOPE_API_KEY": KEY, "DASHSCOPE_REALTIME_URL": emulator.url, "OUTPUT_DIR": str(tmp_path)}


async def start_cli(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alicloud_tts_realtime",
        "batch",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(process: asyncio.subprocess.Process, timeout: float = 60) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def wait_for_ok_lines(directory: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while sum(1 for e in manifest(directory) if e["status"] == "ok") < count:
        assert time.monotonic() < deadline, "the batch did not make progress"
        await asyncio.sleep(0.01)


# --- validation --------------------------------------------------------------------------------


def test_every_problem_is_named_with_its_line(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"id": "a", "text": "First."}\n'
        "\n"  # blank: skipped
        '{"id": "b", "text": "Second.", "voice": "Chery"}\n'
        '{"id": "a", "text": "Again."}\n'
        "{not json\n"
        '["a list"]\n'
        '{"id": "../etc", "text": "Escape."}\n'
        '{"text": "No id.", "speed": 2}\n'
        '{"id": "c", "text": "Calm.", "instruction": "calm", "model": "qwen3-tts-flash-realtime"}\n'
        '{"id": "A", "text": "Case."}\n'
        '{"id": "d", "text": "Fine."}\n',
        encoding="utf-8",
    )
    with pytest.raises(InvalidInputError) as caught:
        check_input(source)
    problems = caught.value.problems
    assert caught.value.count == len(problems) == 9
    assert str(caught.value) == f"{source} has 9 problems; nothing was sent."
    assert problems[0].startswith("line 3: Voice 'Chery' is not available") and "Did you mean 'Cherry'" in problems[0]
    assert problems[1] == "line 4: duplicate id 'a', first on line 1"
    assert problems[2].startswith("line 5: not valid JSON (")
    assert problems[3] == "line 6: must be a JSON object with 'id' and 'text', not a JSON list"
    assert problems[4].startswith("line 7: unsafe id '../etc': use 1–100 characters")
    assert problems[5].startswith("line 8: unknown field 'speed'") and problems[6] == "line 8: missing field 'id'"
    assert problems[7].startswith("line 9: Model 'qwen3-tts-flash-realtime' does not accept an instruction")
    assert problems[8] == "line 10: duplicate id 'A', first on line 1 (file names may not differ only in case)"


def test_at_most_twenty_problems_are_listed_and_all_are_counted(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"id": "x{n}"}}\n' for n in range(50)), encoding="utf-8")
    with pytest.raises(InvalidInputError) as caught:
        check_input(source)
    assert (len(caught.value.problems), caught.value.count) == (20, 50)
    assert caught.value.problems[-1] == "line 20: missing field 'text'"


def test_flags_are_defaults_that_lines_override(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        '\ufeff{"id": "a", "text": "One."}\r\n{"id": "b", "text": "Two.", "voice": "Ethan", "sample_rate": 8000}\n',
        encoding="utf-8",
    )
    defaults = {"voice": "Serena", "sample_rate": 16000}
    assert check_input(source, defaults) == 2
    first, second = read_input(source, defaults)
    assert (first.id, first.line, first.request.voice, first.request.sample_rate) == ("a", 1, "Serena", 16000)
    assert (second.id, second.line, second.request.voice, second.request.sample_rate) == ("b", 2, "Ethan", 8000)
    assert first.request.model == "qwen3-tts-flash-realtime"  # resolved
    with pytest.raises(InvalidRequestError, match="unsafe id"):
        BatchItem.build({"id": "a b", "text": "x"})


def test_an_overlong_line_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"id": "a", "text": "' + b"x" * (3 << 20) + b'"}\n{"id": "b", "text": "Fine."}\n')
    with pytest.raises(InvalidInputError) as caught:
        check_input(source)
    assert caught.value.problems == ("line 1: longer than 1024 KiB; an item's text has at most 5000 characters",)


async def test_bad_input_exits_2_naming_both_lines_and_opens_no_connection(emulator: Emulator, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"id": "one", "text": "Fine."}\n{"id": "two", "text": "Unknown voice.", "voice": "Nobody"}\n'
        '{"id": "one", "text": "Duplicate."}\n',
        encoding="utf-8",
    )
    code, out, err = await finish(
        await start_cli(str(source), "--out-dir", str(tmp_path / "out"), env=cli_env(emulator, tmp_path))
    )
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines[0].startswith("  line 2: Voice 'Nobody' is not available on 'qwen3-tts-flash-realtime'")
    assert lines[1] == "  line 3: duplicate id 'one', first on line 1"
    assert lines[-1] == f"error: {source} has 2 problems; nothing was sent."
    assert emulator.stats.upgrade_requests == emulator.connections_total == 0  # no connection opened
    assert not (tmp_path / "out").exists()


# --- the manifest ------------------------------------------------------------------------------


def test_the_ledger_drops_a_torn_last_line_and_knows_what_is_done(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"x")
    (tmp_path / "c.wav").write_bytes(b"x")
    (tmp_path / ".tts-0123456789ab.part").write_bytes(b"left by a killed run")
    ok = ItemResult(id="a", status="ok", file="a.wav", attempts=1).to_json()
    failed = ItemResult(id="b", status="failed", error="No.", attempts=1).to_json()
    redone = ItemResult(id="c", status="failed", error="No.", attempts=1).to_json()
    (tmp_path / MANIFEST_NAME).write_text(f'{ok}\n{failed}\n{ok.replace("a", "c", 1)}\n{redone}\n{{"id": "d", "sta')
    ledger = Ledger(tmp_path)
    try:
        assert ledger.is_done("a", tmp_path / "a.wav")
        assert not ledger.is_done("b", tmp_path / "b.wav")  # failed: retried
        assert not ledger.is_done("c", tmp_path / "c.wav")  # its last line says failed
        assert not ledger.is_done("x", tmp_path / "a.wav")
        assert not list(tmp_path.glob("*.part"))
        with pytest.raises(ConfigurationError, match="Another batch is writing to"):
            Ledger(tmp_path)
        ledger.append(ItemResult(id="d", status="ok", file="d.wav", attempts=1))
    finally:
        ledger.close()
    lines = (tmp_path / MANIFEST_NAME).read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b", "c", "c", "d"]  # the torn line is gone


# --- end to end ----------------------------------------------------------------------------------


async def test_interrupted_then_resumed_gives_every_file_once(emulator: Emulator, tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out"
    rows = write_input(source, 24)
    env = cli_env(emulator, tmp_path)
    args = (str(source), "--out-dir", str(out), "--concurrency", "3")
    process = await start_cli(*args, env=env)
    await wait_for_ok_lines(out, 6)
    assert emulator.open_sessions > 0  # items are in flight
    process.send_signal(signal.SIGINT)
    code, _, err = await finish(process)
    assert code == 130, err
    assert err.splitlines()[-1].startswith("batch: ") and err.splitlines()[-1].endswith(" (interrupted)")
    first = manifest(out)
    assert 6 <= len(first) < 24 and all(e["status"] == "ok" for e in first)
    assert not list(out.glob(".*.part"))  # in-flight items left nothing behind
    assert emulator.open_sessions == 0
    commits_before = emulator.stats.commits

    code, stdout, err = await finish(await start_cli(*args, "--json", env=env))
    assert code == 0, err
    assert emulator.peak_open_sessions == 3  # never more than 3 sockets at once …
    assert emulator.stats.refused_upgrades == 0  # … and never a fourth attempt
    summary = json.loads(stdout)
    assert (summary["ok"], summary["skipped"], summary["failed"]) == (24 - len(first), len(first), 0)
    assert emulator.stats.commits - commits_before == 24 - len(first)  # done items were not spoken again
    assert emulator.connections_total <= 6  # the engine's pool reuses its 3 sockets item after item
    entries = manifest(out)
    ok = [e for e in entries if e["status"] == "ok"]
    assert len(ok) == 24 and sorted(e["id"] for e in ok) == [row["id"] for row in rows]
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST_NAME, *(f"{row['id']}.wav" for row in rows)])
    for entry in ok:
        check_wav(out / entry["file"], entry["duration_ms"])
        assert entry["attempts"] == 1 and entry["segments"] == 1 and entry["error"] is None
        assert entry["characters"] == len(next(r["text"] for r in rows if r["id"] == entry["id"]))
        assert entry["first_audio_ms"] >= 30  # the emulator's latency


async def test_a_rerun_after_kill_9_completes(emulator: Emulator, tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out"
    rows = write_input(source, 12)
    env = cli_env(emulator, tmp_path)
    process = await start_cli(str(source), "--out-dir", str(out), env=env)
    await wait_for_ok_lines(out, 3)
    process.kill()
    await process.wait()
    # A kill can also land mid-write: leave a torn line and a temporary file, as such a kill would.
    with (out / MANIFEST_NAME).open("a") as handle:
        handle.write('{"id": "item-011", "status": "o')
    (out / ".tts-feedfacecafe.part").write_bytes(b"RIFF")

    code, _, err = await finish(await start_cli(str(source), "--out-dir", str(out), env=env))
    assert code == 0, err
    entries = manifest(out)  # every line is JSON again
    assert {e["id"] for e in entries if e["status"] == "ok"} == {row["id"] for row in rows}
    assert not list(out.glob(".*.part"))
    for row in rows:
        entry = next(e for e in entries if e["id"] == row["id"])
        check_wav(out / f"{row['id']}.wav", entry["duration_ms"])


async def test_failed_items_are_recorded_and_retried_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    items = [BatchItem.build({"id": f"n{n}", "text": f"Number {n}."}) for n in range(4)]
    refusing_config = EmulatorConfig(audio="signal", reject_status=400)
    async with serve_emulator(refusing_config) as refusing, RealtimeEngine(settings_for(refusing)) as engine:
        results = [r async for r in synthesize_batch(items, out, engine=engine, retry=RetryOptions(0))]
    assert [r.status for r in results] == ["failed"] * 4
    assert all(r.error and r.error.startswith("The service refused the connection with HTTP 400") for r in results)
    assert [e["status"] for e in manifest(out)] == ["failed"] * 4
    assert not list(out.glob("*.wav"))

    async with (
        serve_emulator(EmulatorConfig(audio="signal")) as working,
        RealtimeEngine(settings_for(working)) as engine,
    ):
        results = [r async for r in synthesize_batch(items[:2], out, engine=engine)]
        assert [r.status for r in results] == ["ok", "ok"]
        again = [r async for r in synthesize_batch(items, out, engine=engine)]
    assert sorted((r.id, r.status) for r in again) == [("n0", "skipped"), ("n1", "skipped"), ("n2", "ok"), ("n3", "ok")]
    assert [e["status"] for e in manifest(out)] == ["failed"] * 4 + ["ok"] * 4


async def test_a_refused_key_stops_the_batch(emulator: Emulator, tmp_path: Path) -> None:
    items = [BatchItem.build({"id": f"n{n}", "text": "Hello."}) for n in range(20)]
    settings = dataclasses.replace(settings_for(emulator), api_key=SecretStr("sk-wrong"))
    async with RealtimeEngine(settings) as engine:
        results = [r async for r in synthesize_batch(items, tmp_path, engine=engine, concurrency=2)]
    assert 1 <= len(results) <= 2 and all(r.status == "failed" for r in results)
    assert len(emulator.sessions) == len(results)


async def test_closing_the_generator_cancels_items_in_flight(tmp_path: Path) -> None:
    items = [BatchItem.build({"id": f"n{n}", "text": "A sentence that takes a while to say."}) for n in range(6)]
    async with (
        serve_emulator(EmulatorConfig(audio="signal", rtf=1.0)) as slow,
        RealtimeEngine(settings_for(slow)) as engine,
    ):
        results = synthesize_batch(items, tmp_path, engine=engine, concurrency=3)
        task = asyncio.ensure_future(results.__anext__())
        while slow.open_sessions < 3:
            await asyncio.sleep(0.005)
        # Into the audio: Python 3.10/3.11's wait_for loses a cancel that lands as a frame arrives,
        # which the session's first frames, sent back to back, make likely.
        await asyncio.sleep(0.3)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await results.aclose()
        deadline = time.monotonic() + 5
        while slow.open_sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert slow.open_sessions == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME]
    assert manifest(tmp_path) == []
    Ledger(tmp_path).close()  # the lock was released


async def test_the_offline_engine_runs_a_batch_too(tmp_path: Path) -> None:
    pytest.importorskip("espeakng_loader")
    items = [BatchItem.build({"id": "en", "text": "Offline."}), BatchItem.build({"id": "zh", "text": "你好。"})]
    async with OfflineEngine() as engine:
        results = [r async for r in synthesize_batch(items, tmp_path, engine=engine)]
    assert [r.status for r in results] == ["ok", "ok"]
    for result in results:
        assert result.duration_ms is not None
        check_wav(tmp_path / f"{result.id}.wav", result.duration_ms)


@pytest.mark.parametrize("audio_format", ["flac", "mp3"])
async def test_a_batch_writes_the_chosen_format(tmp_path: Path, audio_format: str) -> None:
    pytest.importorskip("espeakng_loader")
    import soundfile

    items = [
        BatchItem.build({"id": "one", "text": "The first file."}),
        BatchItem.build({"id": "two", "text": "二号。"}),
    ]
    async with OfflineEngine() as engine:
        results = [r async for r in synthesize_batch(items, tmp_path, engine=engine, audio_format=audio_format)]
    assert [r.status for r in results] == ["ok", "ok"]
    for result in results:
        path = tmp_path / f"{result.id}.{audio_format}"
        assert result.file == path.name
        info = soundfile.info(str(path))
        assert result.duration_ms is not None
        assert abs(info.duration * 1000 - result.duration_ms) < 80  # mp3 frames pad a little
    assert not list(tmp_path.glob("*.wav"))


def test_an_unknown_format_is_refused_before_any_item(tmp_path: Path) -> None:
    async def run() -> None:
        async with OfflineEngine() as engine:
            async for _ in synthesize_batch(
                [BatchItem.build({"id": "a", "text": "A."})], tmp_path, engine=engine, audio_format="aiff"
            ):
                pass

    with pytest.raises(InvalidRequestError, match="Unknown format"):
        asyncio.run(run())
    assert not (tmp_path / "manifest.jsonl").exists()


# --- pacing ------------------------------------------------------------------------------------


async def test_rpm_spaces_session_starts() -> None:
    pacer = Pacer(rpm=600)  # one start every 0.1 s
    starts = await asyncio.gather(*(pacer.permit() for _ in range(5)))
    gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)]
    assert all(gap >= 0.099 for gap in gaps), gaps


async def test_a_throttle_pauses_the_whole_batch(tmp_path: Path) -> None:
    """The first connection is throttled: every item's next start waits for the shared pause."""
    config = EmulatorConfig(audio="signal", faults=(Fault(conn=1, throttle=True),))
    items = [BatchItem.build({"id": f"n{n}", "text": "Short."}) for n in range(6)]
    async with serve_emulator(config) as emulator, RealtimeEngine(settings_for(emulator)) as realtime:
        timed = TimedEngine(realtime)
        results = [r async for r in synthesize_batch(items, tmp_path, engine=timed, concurrency=3)]
    assert [r.status for r in results].count("ok") == 6
    assert sorted(r.attempts for r in results) == [1, 1, 1, 1, 1, 2]
    # 3 sockets, the throttled one replaced once; the pool reuses them for the other items.
    assert emulator.stats.upgrade_requests == 4 and emulator.connections_total == 4 and emulator.stats.commits == 6
    starts = sorted(timed.starts)
    assert len(starts) == 7
    later = [t - starts[0] for t in starts[3:]]  # the two others started with it, before the throttle
    assert min(later) >= Pacer.BASE_PAUSE * 0.5, later  # no utterance started during the pause (0.5–1 s)


# --- progress ----------------------------------------------------------------------------------


async def test_progress_lines_off_a_terminal() -> None:
    tally = BatchTally(total=10)
    tally.add(ItemResult(id="a", status="ok", duration_ms=1500, characters=12, attempts=1))
    tally.add(ItemResult(id="b", status="failed", error="No.", attempts=1))
    tally.add(ItemResult(id="c", status="skipped"))
    stream = io.StringIO()
    async with show_progress(tally, stream=stream, tty=False, interval=0.02):
        await asyncio.sleep(0.07)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2
    assert lines[0].startswith("batch: 3/10 done (1 failed, 1 skipped), 1.5 s of audio, 12 characters, ")
    assert " ETA " in progress_line(tally)
    assert tally.summary_line().startswith("batch: 1 ok, 1 failed, 1 skipped, 1.5 s of audio, 12 characters, ")


async def test_progress_bar_on_a_terminal() -> None:
    tally = BatchTally(total=4)
    stream = io.StringIO()
    async with show_progress(tally, stream=stream, tty=True):
        tally.add(ItemResult(id="a", status="ok", duration_ms=2000, characters=7, attempts=1))
        await asyncio.sleep(0.3)
    text = stream.getvalue()
    assert "1/4" in text and "2.0 s audio" in text and "7 chars" in text


@pytest.mark.parametrize(("value", "expected"), [("", 3), ("1", 1), (" 5 ", 5)])
def test_max_connections_setting(value: str, expected: int) -> None:
    from alicloud_tts_realtime.settings import load_settings

    assert load_settings({"DASHSCOPE_MAX_CONNECTIONS": value}).max_connections == expected


@pytest.mark.parametrize("value", ["0", "-1", "three", "101"])
def test_max_connections_setting_refuses_nonsense(value: str) -> None:
    from alicloud_tts_realtime.settings import load_settings

    with pytest.raises(ConfigurationError, match="DASHSCOPE_MAX_CONNECTIONS must be a whole number from 1 to 100"):
        load_settings({"DASHSCOPE_MAX_CONNECTIONS": value})

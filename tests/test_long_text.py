"""Long text and incremental text against the emulator: segments in order on one connection, per-segment
retries that never speak twice, partial audio kept only when asked, ``speak -`` and :class:`SynthesizeStream`.

The emulator's ``signal`` audio is a deterministic function of each commit's text, so the audio a
segment should have is computed here and compared byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import wave
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from alicloud_tts_realtime import AudioChunk, build_request
from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig, Fault
from alicloud_tts_realtime.emulator.core import billed_characters
from alicloud_tts_realtime.emulator.signal import SpeechSignal
from alicloud_tts_realtime.engines.offline import OfflineEngine
from alicloud_tts_realtime.engines.realtime import RealtimeEngine
from alicloud_tts_realtime.errors import ConnectionFailedError, ServiceError
from alicloud_tts_realtime.segment import split_text
from alicloud_tts_realtime.service import RetryOptions, synthesize
from alicloud_tts_realtime.settings import Settings
from alicloud_tts_realtime.stream import IDLE_FLUSH_S, SegmentsError, voice_options

pytestmark = pytest.mark.anyio

RATE = 8000  # the signal is cheapest to render at 8 kHz: a 5,000-character text stays fast
FAST_RETRY = RetryOptions(max_retries=2, interval=0.01)

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Dr. Smith paid 3.14 dollars, e.g. a small sum, in the U.S. last year!",
    "Would you read this chapter aloud, please?",
    "Long answers, articles and chapters are spoken sentence by sentence.",
]
CHINESE = ["今天天气很好，我们去公园散步吧。", "这段文字很长，需要分成几段来朗读！", "你听得清楚吗？"]


def mixed_text(chars: int) -> str:
    parts: list[str] = []
    i = 0
    while sum(len(p) + 1 for p in parts) < chars:
        parts.append(ENGLISH[i % len(ENGLISH)] if i % 3 else CHINESE[i % len(CHINESE)])
        i += 1
    return " ".join(parts)[:chars].rstrip() + "."


def signal_of(segments: list[str], rate: int = RATE) -> bytes:
    """The emulator's audio for these commits, in order (Cherry is a female voice)."""
    return b"".join(b"".join(SpeechSignal(s, rate, female=True).blocks()) for s in segments)


def read_pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        assert wav.getframerate() == RATE
        return wav.readframes(wav.getnframes())


def settings_for(emulator: Emulator) -> Settings:
    return Settings(api_key=SecretStr(emulator.config.api_key), key_source="test", realtime_url=emulator.url)


def committed_texts(emulator: Emulator) -> list[list[str]]:
    """Per connection, the texts appended, in order."""
    return [
        [e.text for e in s.events if getattr(e, "type", "") == "input_text_buffer.append"]  # type: ignore[union-attr]
        for s in emulator.sessions
    ]


def cli_env(emulator: Emulator, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DASHSCOPE_API_KEY": emulator.config.api_key,
        "DASHSCOPE_REALTIME_URL": emulator.url,
        "OUTPUT_DIR": str(tmp_path / "out"),
    }


async def speak_process(
    emulator: Emulator, tmp_path: Path, text: str, out: Path, *, stdin: int | None = None
) -> asyncio.subprocess.Process:
    """``alicloud-tts-realtime speak TEXT --engine realtime --json`` against ``emulator``, in a subprocess."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "alicloud_tts_realtime", "speak", text, "--engine", "realtime", "--sample-rate", str(RATE)),
        *("--output", str(out), "--json"),
        env=cli_env(emulator, tmp_path),
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


# --- long text ----------------------------------------------------------------------------------


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", max_commit_chars=600)])
async def test_speak_takes_5000_mixed_characters_in_order_on_one_connection(emulator: Emulator, tmp_path: Path) -> None:
    text = mixed_text(5000)
    segments = split_text(text, 300)
    out = tmp_path / "long.wav"
    process = await speak_process(emulator, tmp_path, text, out)
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    result = json.loads(stdout)
    assert result["segments"] == len(segments) > 15
    assert result["characters"] == sum(billed_characters(s) for s in segments)  # the billing adds up
    stats = emulator.stats
    assert stats.commits == len(segments) and stats.rejected_commits == 0
    assert stats.max_commit_chars_seen <= 600
    assert stats.connections_total == 1  # one pooled connection, commit after commit
    assert committed_texts(emulator) == [segments]
    assert read_pcm(out) == signal_of(segments)  # exactly the service's audio, in text order


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", rtf=0.05)])
async def test_first_audio_arrives_before_the_second_segment_is_committed(emulator: Emulator) -> None:
    text = " ".join(ENGLISH)
    commits_at_first_audio: list[int] = []

    async def on_chunk(chunk: AudioChunk) -> None:
        if not commits_at_first_audio:
            commits_at_first_audio.append(emulator.stats.commits)

    request = build_request(text=text, voice="Cherry", sample_rate=RATE)
    async with RealtimeEngine(settings_for(emulator)) as engine:
        response = await synthesize(request, engine, on_chunk=on_chunk)
    assert commits_at_first_audio == [1]
    assert response.segments == len(split_text(text, 300)) == emulator.stats.commits


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(audio="signal", commit_while_responding="reject", max_commit_chars=600)]
)
async def test_a_service_that_rejects_early_commits_is_never_sent_one(emulator: Emulator, tmp_path: Path) -> None:
    text = mixed_text(1200)
    request = build_request(text=text, voice="Cherry", sample_rate=RATE)
    async with RealtimeEngine(settings_for(emulator)) as engine:
        response = await synthesize(request, engine, output="file", path=tmp_path / "a.wav")
    segments = split_text(text, 300)
    assert response.segments == len(segments) and emulator.stats.rejected_commits == 0
    assert read_pcm(tmp_path / "a.wav") == signal_of(segments)


LONG_SENTENCE = " ".join(f"word{i}" for i in range(35)) + " end of the long sentence."  # 260 characters, no clause mark


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", max_commit_chars=100)])
async def test_a_service_limit_below_the_segment_size_is_learned_and_met(emulator: Emulator, tmp_path: Path) -> None:
    # The service refuses 260 characters, then the first half (at most 130): the refused text is
    # spoken in pieces of at most half of that, the next long sentence is cut to that size before it
    # is sent, and a live consumer hears every accepted commit once, in order.
    text = f"{LONG_SENTENCE} Short one. {LONG_SENTENCE}"
    heard: list[bytes] = []

    async def on_chunk(chunk: AudioChunk) -> None:
        heard.append(chunk.pcm)

    request = build_request(text=text, voice="Cherry", sample_rate=RATE)
    async with RealtimeEngine(settings_for(emulator)) as engine:
        response = await synthesize(request, engine, output="file", path=tmp_path / "l.wav", on_chunk=on_chunk)
    appended = [t for connection in committed_texts(emulator) for t in connection]
    accepted = [t for t in appended if len(t) <= 100]
    half = split_text(LONG_SENTENCE, len(LONG_SENTENCE) // 2)[0]
    assert [t for t in appended if len(t) > 100] == [LONG_SENTENCE, half]  # refused, once each
    assert emulator.stats.rejected_commits == 2 and max(map(len, accepted)) <= len(half) // 2
    assert " ".join(accepted).split() == text.split()  # every word once, in order
    assert response.segments == len(accepted) and response.characters == sum(map(billed_characters, accepted))
    assert read_pcm(tmp_path / "l.wav") == b"".join(heard) == signal_of(accepted)


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", max_commit_chars=10)])
async def test_a_refusal_that_cutting_does_not_cure_is_the_services_error(emulator: Emulator) -> None:
    request = build_request(text=LONG_SENTENCE, voice="Cherry", sample_rate=RATE)
    async with RealtimeEngine(settings_for(emulator)) as engine:
        with pytest.raises(ServiceError, match="Text is too long"):
            await synthesize(request, engine)
    # 260 characters, then at most 130, 65 and 32 were refused; a piece under twice MIN_SPLIT_CHARS
    # is not cut again, so it stops there.
    assert emulator.stats.rejected_commits == 4 and emulator.stats.commits == 0


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(audio="signal", faults=(Fault(conn=1, response=2, drop_after=2),))]
)
async def test_a_file_rolls_back_a_failed_segment_and_redoes_only_that_one(emulator: Emulator, tmp_path: Path) -> None:
    segments = ENGLISH[:3]
    request = build_request(text=" ".join(segments), voice="Cherry", sample_rate=RATE)
    async with RealtimeEngine(settings_for(emulator)) as engine:
        response = await synthesize(request, engine, output="file", path=tmp_path / "r.wav", retry=FAST_RETRY)
    # Connection 1 spoke segment 1 and dropped in segment 2; a fresh connection redid segment 2, then 3.
    assert committed_texts(emulator) == [segments[:2], segments[1:]]
    assert response.segments == 3 and response.characters == sum(billed_characters(s) for s in segments)
    assert read_pcm(tmp_path / "r.wav") == signal_of(segments)  # the dropped segment's first deltas are gone


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(audio="signal", faults=(Fault(conn=1, response=2, drop_after=2),))]
)
async def test_a_live_consumer_is_never_given_a_segment_twice(emulator: Emulator, tmp_path: Path) -> None:
    segments = ENGLISH[:3]
    heard: list[bytes] = []

    async def on_chunk(chunk: AudioChunk) -> None:
        heard.append(chunk.pcm)

    request = build_request(text=" ".join(segments), voice="Cherry", sample_rate=RATE)
    async with RealtimeEngine(settings_for(emulator)) as engine:
        with pytest.raises(SegmentsError) as caught:
            await synthesize(
                request, engine, output="file", path=tmp_path / "x.wav", on_chunk=on_chunk, retry=FAST_RETRY
            )
    assert caught.value.completed == 1 and "1 of 3 segments completed" in str(caught.value)
    assert isinstance(caught.value.cause, ConnectionFailedError)
    assert committed_texts(emulator) == [segments[:2]]  # segment 2 was not spoken again
    assert b"".join(heard).startswith(signal_of(segments[:1]))
    assert list(tmp_path.iterdir()) == []  # no file, not even a partial one


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(audio="signal", faults=(Fault(conn=1, response=2, drop_after=2),))]
)
async def test_keep_partial_saves_what_was_heard_under_a_name_that_says_so(emulator: Emulator, tmp_path: Path) -> None:
    async def on_chunk(chunk: AudioChunk) -> None:
        pass

    request = build_request(text=" ".join(ENGLISH[:3]), voice="Cherry", sample_rate=RATE)
    async with RealtimeEngine(settings_for(emulator)) as engine:
        with pytest.raises(SegmentsError) as caught:
            await synthesize(
                request,
                engine,
                output="file",
                path=tmp_path / "story.wav",
                on_chunk=on_chunk,
                retry=FAST_RETRY,
                keep_partial=True,
            )
    partial = tmp_path / "story.partial.wav"
    assert sorted(tmp_path.iterdir()) == [partial] and str(partial) in str(caught.value)
    assert read_pcm(partial).startswith(signal_of(ENGLISH[:1]))


async def test_every_engine_speaks_long_text_segment_by_segment(tmp_path: Path) -> None:
    pytest.importorskip("espeakng_loader")
    text = " ".join(ENGLISH * 2)
    request = build_request(text=text, voice="Cherry")
    async with OfflineEngine() as engine:
        response = await synthesize(request, engine, output="file", path=tmp_path / "o.wav", max_segment_chars=80)
    assert response.segments == len(split_text(text, 80)) > 4 and response.duration_ms > 5000


def test_the_library_takes_200000_characters() -> None:
    assert len(build_request(text="Hello there. " * 15_000, voice="Cherry").text) >= 195_000


# --- incremental text ---------------------------------------------------------------------------


async def test_speak_stdin_commits_each_sentence_before_the_next_is_written(emulator: Emulator, tmp_path: Path) -> None:
    first, second = "The first sentence arrives now.", "这是第二句话。"
    out = tmp_path / "stdin.wav"
    process = await speak_process(emulator, tmp_path, "-", out, stdin=asyncio.subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write(f"{first} ".encode())  # no next word yet: the pause says the sentence is complete
    await process.stdin.drain()
    with anyio.fail_after(20):  # interpreter start-up included
        while emulator.stats.commits < 1:
            await anyio.sleep(0.05)
    assert committed_texts(emulator) == [[first]]
    await anyio.sleep(1.0)
    process.stdin.write(second.encode()[:5])  # a character cut in two by the pipe stays whole
    await process.stdin.drain()
    await anyio.sleep(0.1)
    process.stdin.write(second.encode()[5:])
    process.stdin.close()  # the end of input flushes the rest
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    result = json.loads(stdout)  # one result, at the end
    assert result["segments"] == 2 and committed_texts(emulator) == [[first, second]]
    assert read_pcm(out) == signal_of([first, second])


async def test_a_stream_speaks_pushed_text_in_order(emulator: Emulator) -> None:
    request = voice_options(voice="Cherry", sample_rate=RATE)
    tokens = ["Hel", "lo the", "re. ", "How are", " you? ", "Fine", " thanks"]
    async with RealtimeEngine(settings_for(emulator)) as engine, engine.open_stream(request) as stream:

        async def feed() -> None:
            for token in tokens:
                stream.push_text(token)
                await anyio.sleep(0.01)
            stream.end_input()

        audio = bytearray()
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            async for chunk in stream:
                audio += chunk.pcm
    segments = ["Hello there.", "How are you?", "Fine thanks"]
    assert bytes(audio) == signal_of(segments) and committed_texts(emulator) == [segments]
    assert stream.metrics.segments == 3 and stream.metrics.characters == sum(len(s) for s in segments)


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", idle_close_s=0.2)])
async def test_a_stream_outlives_a_service_that_closes_idle_connections(emulator: Emulator) -> None:
    # An LLM pauses after a sentence, longer than the service's idle timeout: the sentence is spoken
    # after IDLE_FLUSH_S without waiting for the next word, and the next one goes out on a new socket.
    request = voice_options(voice="Cherry", sample_rate=RATE)
    async with RealtimeEngine(settings_for(emulator)) as engine, engine.open_stream(request) as stream:

        async def feed() -> None:
            stream.push_text("First things")
            stream.push_text(" first. ")
            await anyio.sleep(IDLE_FLUSH_S + 0.5)
            assert emulator.stats.responses == 1  # spoken during the pause
            stream.push_text("Then the rest.")
            stream.end_input()

        audio = bytearray()
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            async for chunk in stream:
                audio += chunk.pcm
    segments = ["First things first.", "Then the rest."]
    assert bytes(audio) == signal_of(segments) and committed_texts(emulator) == [segments[:1], segments[1:]]
    assert stream.metrics.retries == 0  # the closed socket was noticed before anything was sent on it


async def test_a_pause_inside_a_sentence_does_not_cut_it(emulator: Emulator) -> None:
    # "Dr." and an unpunctuated clause do not look finished: the pause is waited out.
    request = voice_options(voice="Cherry", sample_rate=RATE)
    async with RealtimeEngine(settings_for(emulator)) as engine, engine.open_stream(request) as stream:
        for piece in ("I met Dr.", " Smith and his", " sister today."):
            stream.push_text(piece)
            await anyio.sleep(IDLE_FLUSH_S + 0.1)
        assert emulator.stats.commits == 1  # the whole sentence, once it looked finished
        stream.end_input()
        async for _ in stream:
            pass
    assert committed_texts(emulator) == [["I met Dr. Smith and his sister today."]]


async def test_flush_speaks_an_unfinished_sentence_at_once(emulator: Emulator) -> None:
    request = voice_options(voice="Cherry", sample_rate=RATE)
    async with RealtimeEngine(settings_for(emulator)) as engine, engine.open_stream(request) as stream:
        stream.push_text("Hello there")
        stream.flush()
        with anyio.fail_after(IDLE_FLUSH_S):  # no pause rule for a clause: only the flush sends it
            while emulator.stats.commits < 1:
                await anyio.sleep(0.01)
        stream.push_text("and goodbye.")
        stream.end_input()
        async for _ in stream:
            pass
    assert committed_texts(emulator) == [["Hello there", "and goodbye."]] and stream.committed == [
        "Hello there",
        "and goodbye.",
    ]


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(audio="signal", rtf=1.0)])
async def test_closing_a_stream_stops_the_synthesis_and_its_socket(emulator: Emulator) -> None:
    request = voice_options(voice="Cherry", sample_rate=RATE)
    async with RealtimeEngine(settings_for(emulator)) as engine:
        stream = engine.open_stream(request)
        stream.push_text(" ".join(ENGLISH))
        stream.flush()
        first = await stream.__anext__()
        assert first.pcm and emulator.open_sessions == 1
        started = time.perf_counter()
        await stream.aclose()
        with anyio.fail_after(2):
            while emulator.open_sessions:
                await anyio.sleep(0.02)
        assert time.perf_counter() - started < 1.0
        assert emulator.stats.commits == 1  # nothing more was sent
        with pytest.raises(Exception, match="input has ended"):
            stream.push_text("more")

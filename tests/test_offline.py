"""The offline engine speaks: real eSpeak NG audio, checked with features of the PCM.

Nothing is mocked: every test runs the shipped libespeak-ng. Audio is judged by what speech looks
like (level, voicing, pitch, variation over time; see ``speech_features``), durations and chunking.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest

from alicloud_tts_realtime.engines.base import StreamItem as Item
from alicloud_tts_realtime.engines.offline import INSTALL_HINT, MODEL, OfflineEngine, _library, espeak_voice
from alicloud_tts_realtime.errors import EngineUnavailableError
from alicloud_tts_realtime.models import AudioChunk, SpeechRequest, SynthesisOutcome
from speech_features import assert_speech_like, duration_s, mean_pitch, samples, speech_features

pytestmark = pytest.mark.anyio

FOX = "The quick brown fox jumps over the lazy dog."
MANDARIN = "你好，欢迎使用实时语音合成。"
# About 3,000 characters, several minutes of speech: long enough to observe streaming and aborts.
LONG = " ".join(f"Sentence number {i} is read aloud by the offline engine, clearly and slowly." for i in range(40))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def collect(request: SpeechRequest, engine: OfflineEngine | None = None) -> tuple[list[AudioChunk], list[Item]]:
    """Run one synthesis; return its audio chunks and every item in order."""
    items = [item async for item in (engine or OfflineEngine()).stream(request)]
    return [item for item in items if isinstance(item, AudioChunk)], items


async def speak(
    text: str, voice: str = "Cherry", sample_rate: int = 24000, engine: OfflineEngine | None = None
) -> bytes:
    chunks, _ = await collect(SpeechRequest(text=text, voice=voice, sample_rate=sample_rate), engine)
    return b"".join(chunk.pcm for chunk in chunks)


def generator(stream: AsyncIterator[Item]) -> AsyncGenerator[Item, None]:
    """The stream as the async generator it is, for ``aclose()`` (the interface promises an iterator)."""
    assert isinstance(stream, AsyncGenerator)
    return stream


def test_engine_declares_itself() -> None:
    assert OfflineEngine.name == "offline"
    caps = OfflineEngine.capabilities
    assert (caps.remote, caps.streaming, caps.instructions) == (False, True, False)


def test_voice_choice_follows_script_language_and_gender() -> None:
    assert espeak_voice(FOX, "Cherry") == "en-us+f3"
    assert espeak_voice(FOX, "Ethan") == "en-us+m3"
    assert espeak_voice(MANDARIN, "Ethan") == "cmn+m3"
    assert espeak_voice("こんにちは", "Cherry") == "ja+f3"
    assert espeak_voice("안녕하세요", "Cherry") == "ko+f3"
    assert espeak_voice("Привет", "Cherry") == "ru+f3"
    assert espeak_voice("Guten Tag", "Cherry", "German") == "de+f3"
    assert espeak_voice("Hello", "Cherry", "Auto") == "en-us+f3"
    assert espeak_voice(MANDARIN, "Cherry", "English") == "cmn+f3"  # the script wins: en would skip it


def test_every_chosen_voice_exists_in_the_shipped_data() -> None:
    import espeakng_loader  # type: ignore[import-untyped]

    data = Path(espeakng_loader.get_data_path())
    languages = {path.name.lower() for path in (data / "lang").rglob("*") if path.is_file()}
    texts = [FOX, MANDARIN, "こんにちは", "안녕하세요", "Привет"]
    hints = [None, "German", "Italian", "Portuguese", "Spanish", "French"]
    for name in {espeak_voice(text, voice, hint) for text in texts for voice in ("Cherry", "Ethan") for hint in hints}:
        language, variant = name.split("+")
        assert language in languages, name
        assert (data / "voices" / "!v" / variant).is_file(), name


async def test_english_sounds_like_speech() -> None:
    pcm = await speak(FOX)
    features = assert_speech_like(pcm, 24000)
    assert 1.5 <= features.duration_s <= 6, features  # nine words at ~170 wpm
    longer = await speak(FOX + " " + FOX + " Then the dog wakes up and chases the fox across the field.")
    assert duration_s(longer, 24000) > 2.2 * features.duration_s


async def test_mandarin_sounds_like_speech() -> None:
    features = assert_speech_like(await speak(MANDARIN, sample_rate=16000), 16000)
    assert 1.5 <= features.duration_s <= 8, features  # 12 syllables


@pytest.mark.parametrize("text", ["안녕하세요, 반갑습니다.", "Привет, как дела?", "こんにちは、ありがとう。"])
async def test_other_scripts_sound_like_speech(text: str) -> None:
    assert_speech_like(await speak(text), 24000)


async def test_every_sample_rate_gives_100ms_chunks_and_the_same_duration() -> None:
    durations = {}
    for rate in (8000, 16000, 24000, 48000):
        chunks, _ = await collect(SpeechRequest(text=FOX, voice="Ethan", sample_rate=rate))
        assert all(chunk.sample_rate == rate and len(chunk.pcm) % 2 == 0 for chunk in chunks)
        assert all(chunk.duration_ms == pytest.approx(100) for chunk in chunks[:-1])
        assert 0 < chunks[-1].duration_ms <= 100
        durations[rate] = sum(chunk.duration_ms for chunk in chunks) / 1000
        assert_speech_like(b"".join(chunk.pcm for chunk in chunks), rate)
    reference = durations[24000]
    assert all(abs(d - reference) <= 0.05 * reference for d in durations.values()), durations


async def test_female_voice_is_higher_than_male_voice() -> None:
    female = mean_pitch(samples(await speak(FOX, "Cherry")), 24000)
    male = mean_pitch(samples(await speak(FOX, "Ethan")), 24000)
    assert 150 <= female <= 300 and 70 <= male <= 140, (female, male)
    assert female > 1.4 * male


async def test_concurrent_streams_share_the_library_without_mixing_voices() -> None:
    solo = {voice: duration_s(await speak(FOX, voice), 24000) for voice in ("Cherry", "Ethan")}
    shared = OfflineEngine()
    results: dict[str, tuple[str, bytes]] = {}

    async def run(key: str, voice: str, engine: OfflineEngine) -> None:
        results[key] = voice, await speak(FOX, voice, engine=engine)

    def other_event_loop() -> None:  # the library lock is process-wide, not per loop
        results["thread"] = "Ethan", asyncio.run(speak(FOX, "Ethan"))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(run, "shared 1", "Cherry", shared)
            group.start_soon(run, "shared 2", "Ethan", shared)
            group.start_soon(run, "own", "Cherry", OfflineEngine())
            group.start_soon(anyio.to_thread.run_sync, other_event_loop)
    assert len(results) == 4
    for key, (voice, pcm) in results.items():
        # eSpeak varies timing slightly from run to run, so durations match closely, not exactly.
        assert duration_s(pcm, 24000) == pytest.approx(solo[voice], rel=0.03), key
        pitch = mean_pitch(samples(pcm), 24000)
        assert (pitch > 150) if voice == "Cherry" else (pitch < 140), (key, pitch)


async def test_instruction_is_ignored_and_unresolved_requests_work() -> None:
    request = SpeechRequest(text="Good morning.", voice="Serena", instruction="Whisper, sadly.", sample_rate=8000)
    assert request.model is None
    chunks, items = await collect(request)
    assert_speech_like(b"".join(c.pcm for c in chunks), 8000)
    assert items[-1] == SynthesisOutcome(finish_reason="stop", model=MODEL)


async def test_audio_streams_before_synthesis_ends_and_one_outcome_comes_last() -> None:
    start = time.perf_counter()
    first_chunk_s = None
    items = []
    async for item in OfflineEngine().stream(SpeechRequest(text=LONG, voice="Cherry", sample_rate=24000)):
        if first_chunk_s is None:
            first_chunk_s = time.perf_counter() - start
            still_synthesizing = _library().lock.locked()  # the worker holds the library until it ends
        items.append(item)
    total_s = time.perf_counter() - start
    assert first_chunk_s is not None and still_synthesizing
    assert first_chunk_s < 0.2 * total_s, (first_chunk_s, total_s)
    outcomes = [i for i, item in enumerate(items) if isinstance(item, SynthesisOutcome)]
    assert outcomes == [len(items) - 1]
    audio_s = sum(item.duration_ms for item in items if isinstance(item, AudioChunk)) / 1000
    assert audio_s > 60  # a few minutes of speech, in well under a second of wall time
    assert total_s < audio_s / 20


async def test_early_aclose_stops_synthesis_and_releases_the_library() -> None:
    engine = OfflineEngine()
    stream = generator(engine.stream(SpeechRequest(text=LONG, voice="Cherry", sample_rate=48000)))
    first = await stream.__anext__()
    assert isinstance(first, AudioChunk)
    start = time.perf_counter()
    await stream.aclose()
    assert time.perf_counter() - start < 1.0  # against minutes of speech left to synthesize
    assert not _library().lock.locked()  # aclose returns only once the worker thread has stopped
    with anyio.fail_after(5):
        chunks, _ = await collect(SpeechRequest(text=FOX, voice="Cherry"), engine)
    assert_speech_like(b"".join(chunk.pcm for chunk in chunks), 24000)


async def test_cancellation_while_waiting_for_the_library_stops_promptly() -> None:
    lock = _library().lock
    lock.acquire()  # another synthesis (in another thread or event loop) holds the library
    try:
        received = []
        with anyio.move_on_after(0.3) as scope:
            async with aclosing(generator(OfflineEngine().stream(SpeechRequest(text=FOX, voice="Ethan")))) as stream:
                received = [item async for item in stream]
        assert scope.cancelled_caught and received == []
    finally:
        lock.release()
    start = time.perf_counter()
    assert_speech_like(await speak(FOX), 24000)
    assert time.perf_counter() - start < 2


async def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "soxr", None)  # makes `import soxr` raise ImportError
    with pytest.raises(EngineUnavailableError, match="soxr") as excinfo:
        await collect(SpeechRequest(text=FOX, voice="Cherry"))
    assert INSTALL_HINT in str(excinfo.value)


def test_features_tell_speech_from_tone_noise_and_silence() -> None:
    import numpy as np

    rate = 24000
    t = np.arange(2 * rate) / rate
    clips = {
        "tone": 0.5 * np.sin(2 * np.pi * 200 * t),
        "warbling tone": 0.5 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)),
        "noise": np.random.default_rng(0).normal(0, 0.2, len(t)),
        "silence": np.zeros(len(t)),
    }
    for name, clip in clips.items():
        pcm = (clip * 32767).astype("<i2").tobytes()
        with pytest.raises(AssertionError):
            assert_speech_like(pcm, rate)
        assert speech_features(pcm, rate).duration_s == 2, name

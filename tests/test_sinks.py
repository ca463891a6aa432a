"""Sinks: streamed files renamed at close, rollback, abort, fan-out, and the service driving them."""

from __future__ import annotations

import os
import random
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alicloud_tts_realtime import AudioChunk, ConnectionFailedError, InvalidStateError, OutputError, build_request
from alicloud_tts_realtime.audio import decode_chunk
from alicloud_tts_realtime.engines.base import Capabilities, Engine, StreamItem
from alicloud_tts_realtime.formats import FORMATS
from alicloud_tts_realtime.models import SpeechRequest, SynthesisOutcome
from alicloud_tts_realtime.output import confined_path
from alicloud_tts_realtime.service import RetryOptions, synthesize
from alicloud_tts_realtime.sinks import (
    FLUSH_BYTES,
    CallbackSink,
    ChunksSink,
    EncodedFileSink,
    PcmFileSink,
    TeeSink,
    WavFileSink,
)

pytestmark = pytest.mark.anyio
RATE = 24000


def samples(value: int, count: int) -> bytes:
    return value.to_bytes(2, "little", signed=True) * count


def read_wav(path: Path) -> tuple[int, bytes]:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.getframerate(), wav.readframes(wav.getnframes())


async def test_a_wav_sink_streams_to_a_hidden_part_and_renames_it_at_close(tmp_path: Path) -> None:
    target = tmp_path / "new" / "speech.wav"
    sink = WavFileSink(target, RATE)
    big = samples(3, FLUSH_BYTES // 2 + 10)  # more than one batch: goes to disk before close
    await sink.write(big)
    await sink.write(samples(-4, 5))
    parts = list((tmp_path / "new").iterdir())
    assert not target.exists() and len(parts) == 1 and parts[0].name.startswith(".tts-")
    assert parts[0].name.endswith(".part") and parts[0].stat().st_size == 44 + len(big)
    await sink.close()
    assert read_wav(target) == (RATE, big + samples(-4, 5))
    assert os.listdir(tmp_path / "new") == ["speech.wav"]
    with pytest.raises(InvalidStateError, match="closed"):
        await sink.write(b"\x00\x00")
    await sink.abort()  # after close: nothing to discard, the file stays
    assert target.exists()


async def test_abort_leaves_neither_part_nor_the_folders_made_for_it(tmp_path: Path) -> None:
    sink = WavFileSink(tmp_path / "a" / "b" / "x.wav", RATE)
    await sink.write(samples(1, FLUSH_BYTES))
    assert (tmp_path / "a" / "b").is_dir()
    await sink.abort()
    await sink.abort()  # idempotent
    assert list(tmp_path.iterdir()) == []
    unwritten = PcmFileSink(tmp_path / "never.pcm", RATE)
    await unwritten.write(b"\x01\x00")
    await unwritten.abort()  # nothing reached the disk yet
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["wav", "pcm"])
async def test_rollback_drops_the_last_bytes_buffered_or_on_disk(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"x.{kind}"
    sink = WavFileSink(path, RATE) if kind == "wav" else PcmFileSink(path, RATE)
    first, second = samples(1, FLUSH_BYTES // 2), samples(2, FLUSH_BYTES // 2)
    await sink.write(first)
    await sink.write(second)  # flushed to disk
    await sink.write(samples(9, 10))
    await sink.rollback(20)  # in the buffer
    await sink.rollback(len(second))  # on disk: truncated
    await sink.write(samples(5, 3))
    await sink.close()
    expected = first + samples(5, 3)
    assert (read_wav(path)[1] if kind == "wav" else path.read_bytes()) == expected
    with pytest.raises(InvalidStateError):
        await WavFileSink(tmp_path / "y.wav", RATE).rollback(2)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_file_sink_holds_exactly_what_was_written_and_not_rolled_back(tmp_path: Path, seed: int) -> None:
    # Writes of every size around the batch (small, crossing it, larger than it) mixed with rollbacks
    # into the batch and onto the disk: the file is the model's bytes, in order.
    rng = random.Random(seed)
    sink, model = PcmFileSink(tmp_path / "x.pcm", RATE), bytearray()
    for _ in range(60):
        if model and rng.random() < 0.2:
            nbytes = 2 * rng.randint(1, len(model) // 2)
            await sink.rollback(nbytes)
            del model[len(model) - nbytes :]
        else:
            pcm = rng.randbytes(2 * rng.choice([1, 100, 2400, FLUSH_BYTES // 4 + 1, FLUSH_BYTES // 2, FLUSH_BYTES]))
            await sink.write(pcm)
            model += pcm
    await sink.close()
    assert (tmp_path / "x.pcm").read_bytes() == model


async def test_chunks_sink_rolls_back_whole_and_partial_chunks() -> None:
    sink = ChunksSink()
    for value in (1, 2, 3):
        await sink.write(samples(value, 4))
    await sink.rollback(8 + 2)  # the last chunk and one sample of the one before
    assert [decode_chunk(c) for c in sink.chunks] == [samples(1, 4), samples(2, 3)]
    await sink.abort()
    assert sink.chunks == []


async def test_a_tee_feeds_every_sink_and_is_live_when_one_is(tmp_path: Path) -> None:
    heard: list[int] = []

    async def listen(chunk: AudioChunk) -> None:
        heard.append(len(chunk.pcm))

    chunks = ChunksSink()
    quiet = TeeSink([chunks, WavFileSink(tmp_path / "x.wav", RATE)])
    loud = TeeSink([ChunksSink(), CallbackSink(listen, RATE)])
    assert not quiet.live and loud.live and CallbackSink.live and not ChunksSink.live
    for tee in (quiet, loud):
        await tee.write(samples(1, 8))
    await quiet.rollback(4)
    with pytest.raises(InvalidStateError, match="live"):
        await loud.rollback(4)
    await quiet.close()
    assert read_wav(tmp_path / "x.wav")[1] == samples(1, 6) and heard == [16]


async def test_an_encoded_sink_takes_back_all_of_its_audio_but_not_a_part(tmp_path: Path) -> None:
    import soundfile

    sink = EncodedFileSink(tmp_path / "x.flac", RATE, FORMATS["flac"])
    await sink.write(samples(100, FLUSH_BYTES))  # encoded already
    with pytest.raises(InvalidStateError, match="part of the flac audio"):
        await sink.rollback(10)
    await sink.rollback(FLUSH_BYTES * 2)  # all of it: the encoder starts again
    await sink.write(samples(200, 1000))
    await sink.close()
    data, rate = soundfile.read(tmp_path / "x.flac", dtype="int16")
    assert rate == RATE and len(data) == 1000 and set(data.tolist()) == {200}


# --- the service drives the sinks ---------------------------------------------------------------


class FlakyEngine(Engine):
    """Fails its first attempt after some audio (retryable), then speaks: a connection drop mid-stream."""

    name = "flaky"
    capabilities = Capabilities(remote=False, streaming=True, instructions=False)

    def __init__(self, failures: int = 1) -> None:
        self.attempts = 0
        self.failures = failures

    async def stream(self, request: SpeechRequest) -> AsyncIterator[StreamItem]:
        self.attempts += 1
        yield AudioChunk(samples(self.attempts, 600), request.sample_rate)
        if self.attempts <= self.failures:
            raise ConnectionFailedError("The connection dropped mid-stream.")
        yield AudioChunk(samples(7, 400), request.sample_rate)
        yield SynthesisOutcome(finish_reason="stop", model=request.model or "m")


async def test_audio_only_in_non_live_sinks_is_rolled_back_and_redone(tmp_path: Path) -> None:
    engine = FlakyEngine()
    response = await synthesize(
        build_request(text="Said once.", voice="Cherry"),
        engine,
        output="both",
        path=tmp_path / "x.wav",
        retry=RetryOptions(max_retries=1, interval=0),
    )
    expected = samples(2, 600) + samples(7, 400)
    assert engine.attempts == 2 and read_wav(tmp_path / "x.wav")[1] == expected
    assert b"".join(decode_chunk(c) for c in response.audio_base64_pcm_chunks) == expected
    assert response.duration_ms == round(1000 / RATE * 1000) and response.file_format == "wav"


async def test_audio_that_reached_a_live_sink_is_never_redone(tmp_path: Path) -> None:
    engine, heard = FlakyEngine(), []

    async def listen(chunk: AudioChunk) -> None:
        heard.append(chunk.pcm)

    with pytest.raises(ConnectionFailedError):
        await synthesize(
            build_request(text="Said once.", voice="Cherry"),
            engine,
            output="file",
            path=tmp_path / "x.wav",
            sinks=[CallbackSink(listen, RATE)],
            retry=RetryOptions(max_retries=3, interval=0),
        )
    assert engine.attempts == 1 and heard == [samples(1, 600)]
    assert list(tmp_path.iterdir()) == []


async def test_output_none_feeds_only_the_given_sinks(tmp_path: Path) -> None:
    chunks = ChunksSink()
    response = await synthesize(
        build_request(text="Hi.", voice="Cherry"), FlakyEngine(), output=None, sinks=[chunks], retry=RetryOptions(1, 0)
    )
    assert response.audio_base64_pcm_chunks == [] and response.file_path is None
    assert b"".join(decode_chunk(c) for c in chunks.chunks) == samples(2, 600) + samples(7, 400)


# --- issue 14, item 2: a folder swapped for a symlink between the check and the write --------------


@pytest.mark.skipif(os.name == "nt", reason="POSIX symlinks")
@pytest.mark.parametrize("existing", [True, False])
async def test_a_symlink_planted_during_the_synthesis_is_refused(tmp_path: Path, existing: bool) -> None:
    base, outside = tmp_path / "out", tmp_path / "outside"
    base.mkdir()
    outside.mkdir()
    if existing:
        (base / "sub").mkdir()
    target = confined_path(base, "sub/x.wav")  # the check: sub is a real folder inside (or absent)

    async def plant(_chunk: AudioChunk) -> None:  # the hook between the check and the write
        if not (base / "sub").is_symlink():
            if existing:
                (base / "sub").rmdir()
            (base / "sub").symlink_to(outside, target_is_directory=True)

    with pytest.raises(OutputError, match=r"sub became a symbolic link during the synthesis"):
        await synthesize(
            build_request(text="Hi.", voice="Cherry"),
            FlakyEngine(failures=0),
            output="file",
            path=target,
            audio_dir=base,
            confine=True,
            on_chunk=plant,
            retry=RetryOptions(1, 0),
        )
    assert list(outside.iterdir()) == []  # nothing landed outside the output directory
    assert os.listdir(base) == ["sub"]

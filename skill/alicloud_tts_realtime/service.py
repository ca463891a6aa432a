"""One call from a request to a response: retries, timing, the no-audio check, the sinks.

:func:`synthesize` is the only place that decides to try again. It feeds the audio to sinks
(:mod:`.sinks`: the file, the base64 chunks, callbacks) as it arrives, and holds no list of PCM.
It retries an attempt that failed with a ``retryable`` error *before any of its audio reached a
live sink* (progress, playback: the caller), and never after: the same text is never spoken twice
(style: LiveKit's ``ChunkedStream._main_task``). Audio that only went to non-live sinks (a file
not yet renamed into place, chunks not yet returned) is rolled back and the attempt redone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread

from .audio import duration_ms
from .engines.base import Engine
from .errors import InvalidRequestError, InvalidStateError, NoAudioError, OutputError, TTSError
from .formats import AudioFormat, check_format, resolve_format
from .models import AudioChunk, SpeechRequest, SpeechResponse, SynthesisOutcome
from .output import new_audio_name, prepare_target
from .sinks import AudioSink, CallbackSink, ChunksSink, FileSink, TeeSink, open_file_sink

__all__ = ["OutputMode", "RetryOptions", "synthesize"]

logger = logging.getLogger(__name__)

OutputMode = Literal["chunks", "file", "both"]
ChunkCallback = Callable[[AudioChunk], Awaitable[None]]


@dataclass(frozen=True)
class RetryOptions:
    """How hard to try before the first audio.

    Attributes:
        max_retries: Extra attempts after the first, only for retryable errors before audio.
        interval: Seconds before the first retry; doubled for each further one.
    """

    max_retries: int = 2
    interval: float = 0.5

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.interval < 0:
            raise ValueError("max_retries and interval must be non-negative")


async def synthesize(
    request: SpeechRequest,
    engine: Engine,
    *,
    output: OutputMode | None = "chunks",
    path: Path | None = None,
    audio_dir: Path | None = None,
    on_chunk: ChunkCallback | None = None,
    retry: RetryOptions | None = None,
    format: str | None = None,  # shadows the builtin: the name callers use everywhere
    sinks: Sequence[AudioSink] = (),
    confine: bool = False,
) -> SpeechResponse:
    """Synthesize ``request`` with ``engine``, feeding the audio to sinks as it arrives.

    Args:
        request: The request; it is resolved (model chosen, fields checked) before anything is sent.
        engine: The engine to use; it is not closed here.
        output: ``chunks`` returns base64 chunks, ``file`` saves a file and returns no chunks,
            ``both`` does both, ``None`` does neither (only ``sinks`` and ``on_chunk`` get audio).
        path: Where to save (``file``/``both``); default: a fresh name in ``audio_dir``.
        audio_dir: Directory for generated names; required when saving without ``path``.
        on_chunk: Awaited with each chunk as it arrives (progress, live playback); live.
        retry: Retry policy; default :class:`RetryOptions`.
        format: The saved file's format (:data:`~.formats.FORMAT_NAMES`); default: the one
            ``path``'s extension names, else ``wav``. Chunks are always PCM.
        sinks: More sinks fed with the same audio, after the file and the chunks; each is closed
            when the synthesis succeeds and aborted when it fails.
        confine: Keep the file inside ``audio_dir`` (``path`` must be below it): folders are
            walked without following symlinks, so one planted during the synthesis is refused.

    Returns:
        The response; ``file_path`` is absolute when a file was written.

    Raises:
        TTSError: Typed failure. Nothing is written when the synthesis fails or is cancelled. An
            unwritable output path or a format this machine cannot encode is a
            :class:`~.errors.LocalError` raised before the engine is called.
    """
    request = request.resolved()
    saving = output in ("file", "both")
    if saving and path is None and audio_dir is None:
        raise InvalidRequestError("Saving audio needs a path or an output directory.", field="output")
    if format is not None and not saving:
        raise InvalidRequestError("format applies only to saved audio; use output 'file' or 'both'.", field="format")
    sink_list: list[AudioSink] = []
    file_sink: FileSink | None = None
    audio_format: AudioFormat | None = None
    if saving:
        audio_format = resolve_format(format, path.name if path is not None else None)
        check_format(audio_format, request.sample_rate)
        wanted = path if path is not None else audio_dir / new_audio_name(suffix=audio_format.extension)  # type: ignore[operator]
        # File-system work runs in anyio's bounded worker threads: a slow disk never stalls the loop.
        target = await anyio.to_thread.run_sync(prepare_target, wanted)
        root: Path | None = None
        if confine:
            if audio_dir is None:
                raise InvalidRequestError("confine needs the output directory (audio_dir).", field="output")
            root = await anyio.to_thread.run_sync(Path.resolve, audio_dir)
            if not target.is_relative_to(root):
                raise InvalidRequestError(f"{target} is not inside the output directory {root}.", field="output")
        file_sink = open_file_sink(audio_format, target, request.sample_rate, root=root)
        sink_list.append(file_sink)
    chunks = ChunksSink() if output in ("chunks", "both") else None
    if chunks is not None:
        sink_list.append(chunks)
    sink_list.extend(sinks)
    if on_chunk is not None:
        sink_list.append(CallbackSink(on_chunk, request.sample_rate))
    tee = TeeSink(sink_list)
    try:
        total_bytes, first_audio_ms, outcome = await _run_attempts(request, engine, tee, retry or RetryOptions())
        await tee.close()
    except BaseException:
        await tee.abort()
        raise
    return SpeechResponse(
        audio_base64_pcm_chunks=chunks.chunks if chunks is not None else [],
        sample_rate=request.sample_rate,
        finish_reason=outcome.finish_reason,
        model=outcome.model,
        voice=request.voice,
        engine=outcome.engine or engine.name,
        duration_ms=round(duration_ms(total_bytes, request.sample_rate)),
        first_audio_ms=first_audio_ms,
        characters=outcome.characters,
        session_id=outcome.session_id,
        file_path=str(file_sink.path) if file_sink is not None else None,
        file_format=audio_format.name if audio_format is not None else None,
        reused_connection=outcome.reused_connection,
        connect_ms=outcome.connect_ms,
    )


async def _run_attempts(
    request: SpeechRequest, engine: Engine, sink: AudioSink, retry: RetryOptions
) -> tuple[int, int | None, SynthesisOutcome]:
    """Stream attempts into ``sink`` until one completes; return its bytes, first audio and outcome.

    A failed attempt is retried when its error is retryable, retries are left, and none of its
    audio reached a live sink; what it wrote to the other sinks is rolled back first.
    """
    started = time.perf_counter()
    first_audio_ms: int | None = None
    attempt = 0
    while True:
        written = 0
        try:
            outcome: SynthesisOutcome | None = None
            async with contextlib.aclosing(engine.stream(request)) as stream:  # type: ignore[type-var]
                async for item in stream:
                    if isinstance(item, AudioChunk):
                        if not item.pcm:
                            continue
                        if first_audio_ms is None:
                            first_audio_ms = round((time.perf_counter() - started) * 1000)
                        written += len(item.pcm)
                        await sink.write(item.pcm)
                    else:
                        outcome = item
            if not written:
                raise NoAudioError(f"The {engine.name} engine produced no audio for non-empty text.")
            if outcome is None:
                raise NoAudioError(f"The {engine.name} engine ended without completing the audio.")
            return written, first_audio_ms, outcome
        except TTSError as exc:
            if isinstance(exc, (OutputError, InvalidStateError)) or not exc.retryable or attempt >= retry.max_retries:
                raise
            if not engine.retry_whole:  # a composite (the fallback) already tried its engines in turn
                raise
            if written and sink.live:
                raise  # audio reached a listener: never spoken twice
            try:
                await sink.rollback(written)
            except InvalidStateError:
                raise exc from None
            delay = retry.interval * 2**attempt
            attempt += 1
            logger.warning("attempt %d failed (%s); retrying in %.1f s", attempt, exc, delay)
            if written:
                first_audio_ms = None
            await asyncio.sleep(delay)

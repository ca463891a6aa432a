"""One call from a request to a response: retries, timing, the no-audio check, the sinks.

:func:`synthesize` is the only place that decides to try again. It feeds the audio to sinks
(:mod:`.sinks`: the file, the base64 chunks, callbacks) as it arrives, and holds no list of PCM.
It retries an attempt that failed with a ``retryable`` error *before any of its audio reached a
live sink* (progress, playback: the caller), and never after: the same text is never spoken twice
(style: LiveKit's ``ChunkedStream._main_task``). Audio that only went to non-live sinks (a file
not yet renamed into place, chunks not yet returned) is rolled back and the attempt redone.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread

from .audio import duration_ms
from .engines.base import Engine
from .errors import InvalidRequestError, TTSError
from .formats import AudioFormat, check_format, resolve_format
from .models import AudioChunk, SpeechRequest, SpeechResponse
from .output import new_audio_name, prepare_target
from .segment import DEFAULT_MAX_CHARS, split_text
from .sinks import AudioSink, CallbackSink, ChunksSink, FileSink, TeeSink, WavFileSink, open_file_sink
from .stream import IDLE_FLUSH_S, SegmentedSpeech, segments_from, segments_of

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
    max_segment_chars: int | None = None,
    keep_partial: bool = False,
    text_pieces: AsyncIterable[str] | None = None,
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
        on_chunk: Awaited with each chunk as it arrives (progress, live playback).
        retry: Retry policy, per segment; default :class:`RetryOptions`.
        max_segment_chars: Longest segment (``DASHSCOPE_MAX_SEGMENT_CHARS``); default 300.
        keep_partial: When the synthesis fails after some audio, save what there is as
            ``<name>.partial.wav`` next to the target (named in the error) instead of nothing.
        text_pieces: Speak this text, arriving in pieces (stdin, tokens), instead of
            ``request.text``: each sentence is spoken as soon as it is complete (a sentence that
            looks finished, once no input came for :data:`IDLE_FLUSH_S`).

    Returns:
        The response; ``file_path`` is absolute when a file was written.

    The text is spoken segment by segment (:mod:`.stream`): in order, each segment retried on its
    own while none of its audio reached ``on_chunk``; billed characters add up.

    Raises:
        TTSError: Typed failure; after some segments completed, a :class:`~.stream.SegmentsError`
            saying how many. Nothing is written when the synthesis fails or is cancelled (unless
            ``keep_partial``). An unwritable output path or a format this machine cannot encode is
            a :class:`~.errors.LocalError` raised before the engine is called.
    """
    request = request.resolved()
    saving = output in ("file", "both")
    if saving and path is None and audio_dir is None:
        raise InvalidRequestError("Saving audio needs a path or an output directory.", field="output")
    if format is not None and not saving:
        raise InvalidRequestError("format applies only to saved audio; use output 'file' or 'both'.", field="format")
    sink_list: list[AudioSink] = []
    file_sink: FileSink | None = None
    partial: WavFileSink | None = None
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
        if keep_partial:
            partial = WavFileSink(partial_path(target), request.sample_rate, root=root)
    chunks = ChunksSink() if output in ("chunks", "both") else None
    if chunks is not None:
        sink_list.append(chunks)
    sink_list.extend(sinks)
    if on_chunk is not None:
        sink_list.append(CallbackSink(on_chunk, request.sample_rate))
    tee = TeeSink(sink_list)
    # keep_partial: a WAV beside the target gets the same audio; closed only when the call fails.
    feed: AudioSink = TeeSink([tee, partial]) if partial is not None else tee
    max_chars = max_segment_chars or DEFAULT_MAX_CHARS
    segments: Iterable[str] | AsyncIterable[str]
    total: Callable[[], int] | None = None
    if text_pieces is not None:
        segments = segments_from(text_pieces, max_chars, idle_flush_s=IDLE_FLUSH_S)
    elif engine.segments_itself:
        segments = [request.text]
    else:
        segments = segments_of(request.text, max_chars)
        text = request.text
        total = lambda: len(split_text(text, max_chars))  # noqa: E731  (only for an error's message)
    speech = SegmentedSpeech(engine, request, retry)
    try:
        await speech.run(segments, feed, total)
        await tee.close()
    except BaseException as exc:
        await tee.abort()
        if partial is not None:
            if isinstance(exc, TTSError) and speech.metrics.first_audio_ms is not None:
                try:
                    await partial.close()
                    exc.message = f"{exc.message.rstrip('.')}; the partial audio is in {partial.path}."
                except TTSError as keep_exc:
                    logger.warning("could not keep the partial audio: %s", keep_exc)
                    await partial.abort()
            else:
                await partial.abort()
        raise
    if partial is not None:
        await partial.abort()
    outcome = speech.metrics.outcome()
    first_audio_ms = speech.metrics.first_audio_ms
    total_bytes = speech.metrics.pcm_bytes
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
        text_characters=len(request.text) if text_pieces is None else None,  # stdin: not known as one text
        session_id=outcome.session_id,
        file_path=str(file_sink.path) if file_sink is not None else None,
        file_format=audio_format.name if audio_format is not None else None,
        reused_connection=outcome.reused_connection,
        connect_ms=outcome.connect_ms,
        segments=speech.metrics.segments,
    )


def partial_path(target: Path) -> Path:
    """``<name>.partial.wav`` next to ``target``: where ``keep_partial`` saves the audio of a failed call."""
    return target.with_name(f"{target.stem}.partial.wav")

"""One call from a request to a response: retries, timing, the no-audio check, saving.

:func:`synthesize` is the only place that decides to try again. It retries an attempt that failed
with a ``retryable`` error *before any audio reached the caller*, and never after: the same text is
never spoken twice (style: LiveKit's ``ChunkedStream._main_task``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread

from .audio import duration_ms, encode_chunk, wav_bytes
from .engines.base import Engine
from .errors import InvalidRequestError, NoAudioError, OutputError, TTSError
from .models import AudioChunk, SpeechRequest, SpeechResponse, SynthesisOutcome
from .output import atomic_write, new_audio_name, prepare_target

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
    output: OutputMode = "chunks",
    path: Path | None = None,
    audio_dir: Path | None = None,
    on_chunk: ChunkCallback | None = None,
    retry: RetryOptions | None = None,
) -> SpeechResponse:
    """Synthesize ``request`` with ``engine`` and return the normalized response.

    Args:
        request: The request; it is resolved (model chosen, fields checked) before anything is sent.
        engine: The engine to use; it is not closed here.
        output: ``chunks`` returns base64 chunks, ``file`` saves a WAV and returns no chunks,
            ``both`` does both.
        path: Where to save the WAV (``file``/``both``); default: a fresh name in ``audio_dir``.
        audio_dir: Directory for generated names; required when saving without ``path``.
        on_chunk: Awaited with each chunk as it arrives (progress, live playback).
        retry: Retry policy; default :class:`RetryOptions`.

    Returns:
        The response; ``file_path`` is absolute when a file was written.

    Raises:
        TTSError: Typed failure. Nothing is written when the synthesis fails or is cancelled. An
            unwritable output path is a :class:`ConfigurationError` raised before the engine is called.
    """
    request = request.resolved()
    if output != "chunks" and path is None and audio_dir is None:
        raise InvalidRequestError("Saving audio needs a path or an output directory.", field="output")
    target: Path | None = None
    if output != "chunks":
        # File-system work runs in anyio's bounded worker threads: a slow disk never stalls the loop.
        wanted = path if path is not None else audio_dir / new_audio_name()  # type: ignore[operator]
        target = await anyio.to_thread.run_sync(prepare_target, wanted)
    retry = retry or RetryOptions()
    started = time.perf_counter()
    pcm: list[bytes] = []
    first_audio_ms: int | None = None
    attempt = 0
    while True:
        try:
            outcome: SynthesisOutcome | None = None
            async with contextlib.aclosing(engine.stream(request)) as stream:  # type: ignore[type-var]
                async for item in stream:
                    if isinstance(item, AudioChunk):
                        if not item.pcm:
                            continue
                        if first_audio_ms is None:
                            first_audio_ms = round((time.perf_counter() - started) * 1000)
                        pcm.append(item.pcm)
                        if on_chunk is not None:
                            await on_chunk(item)
                    else:
                        outcome = item
            if not pcm:
                raise NoAudioError(f"The {engine.name} engine produced no audio for non-empty text.")
            if outcome is None:
                raise NoAudioError(f"The {engine.name} engine ended without completing the audio.")
            break
        except TTSError as exc:
            if pcm or not exc.retryable or not engine.retry_whole or attempt >= retry.max_retries:
                raise
            delay = retry.interval * 2**attempt
            attempt += 1
            logger.warning("attempt %d failed (%s); retrying in %.1f s", attempt, exc, delay)
            await asyncio.sleep(delay)

    file_path: str | None = None
    if target is not None:
        try:
            file_path = str(await atomic_write(target, wav_bytes(pcm, request.sample_rate)))
        except OSError as exc:  # e.g. the disk filled up during the synthesis
            raise OutputError(
                f"The audio was synthesized but could not be written to {target}: {exc.strerror or exc}; "
                "free some space or choose another output path."
            ) from exc
    total_bytes = sum(len(chunk) for chunk in pcm)
    return SpeechResponse(
        audio_base64_pcm_chunks=[encode_chunk(chunk) for chunk in pcm] if output != "file" else [],
        sample_rate=request.sample_rate,
        finish_reason=outcome.finish_reason,
        model=outcome.model,
        voice=request.voice,
        engine=outcome.engine or engine.name,
        duration_ms=round(duration_ms(total_bytes, request.sample_rate)),
        first_audio_ms=first_audio_ms,
        characters=outcome.characters,
        session_id=outcome.session_id,
        file_path=file_path,
        reused_connection=outcome.reused_connection,
        connect_ms=outcome.connect_ms,
    )

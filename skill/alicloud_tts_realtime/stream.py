"""Text spoken segment by segment: long texts, and texts that arrive in pieces (LLM token streams).

:class:`SegmentedSpeech` is the one object that owns the per-segment retries and the metrics. It
speaks one segment at a time through an engine's :meth:`~.engines.base.Engine.stream` and writes the
audio to a sink, in text order. For the realtime engine each segment is one commit; the engine's
pool hands the same connection back for the next segment, so a long text is a run of commits on one
socket, and the next commit goes out as soon as the previous response ended (the client never
depends on the service queueing commits). Every other engine speaks the same segments one by one,
so every engine handles long text.

Retry per segment, never speaking twice:

- a segment that fails before any of its audio reached a *live* sink (progress, playback) is tried
  again (the realtime engine discards the failed socket, so the retry runs on a fresh connection);
- a sink that is not live (a file, the chunks of the response) rolls back to the segment's start and
  the segment is redone, because nothing was delivered;
- segments already completed are never redone;
- when no retry is possible, the error says how many segments completed (:class:`SegmentsError`).

The service's per-commit length limit is not documented (protocol document §11.10). When the
service refuses a segment's text as a request error before any of its audio (the emulator's
``--max-commit-chars``), the segment is spoken in pieces of at most half its length instead, cut
like any over-long segment, and later segments of the call are cut to that size before they are
sent. Nothing was spoken of the refused text, so nothing is spoken twice; below
:data:`MIN_SPLIT_CHARS` the service's error stands.

:class:`SynthesizeStream` is the incremental face: ``push_text()`` pieces of text, ``flush()``,
``end_input()``, and iterate the audio chunks. Its worker cuts the pieces with :func:`segments_from`,
the same function ``speak -`` uses, which hands each sentence on as soon as it is complete (or once
it looks finished and the writer paused), so the first sentence is spoken while the rest is being
written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from .errors import InvalidStateError, NoAudioError, OutputError, ServiceError, TTSError
from .models import AudioChunk, FinishReason, SpeechRequest, SynthesisOutcome
from .segment import DEFAULT_MAX_CHARS, Segmenter, split_text
from .sinks import AudioSink

if TYPE_CHECKING:
    from .engines.base import Engine
    from .service import RetryOptions

__all__ = [
    "IDLE_FLUSH_S",
    "STREAM_TEXT",
    "SegmentedSpeech",
    "SegmentsError",
    "SpeechMetrics",
    "SynthesizeStream",
    "segments_from",
    "segments_of",
    "voice_options",
]

IDLE_FLUSH_S = 0.5
"""Incremental text: a sentence that looks finished is spoken once no more text came for this long."""

MIN_SPLIT_CHARS = 20
"""A refused segment shorter than this is not cut further: the refusal is not about its length."""

STREAM_TEXT = "Text arrives later."
"""The placeholder text of a request that only carries voice options (it is never spoken)."""


def voice_options(**fields: object) -> SpeechRequest:
    """A resolved request carrying only voice, model and format, for :meth:`~.engines.base.Engine.open_stream`.

    Takes the fields of :class:`~.models.SpeechRequest` except ``text``.

    Raises:
        InvalidRequestError: A field is invalid or does not fit its model.
    """
    from .models import build_request

    return build_request(text=STREAM_TEXT, **fields)


logger = logging.getLogger(__name__)


class SegmentsError(TTSError):
    """A segmented synthesis failed for good after some segments completed.

    The message is the cause's, followed by how many segments completed; ``retryable`` is the
    cause's. The cause is chained (``__cause__``) and kept as :attr:`cause`.

    Attributes:
        completed: Segments spoken completely before the failure.
        cause: The error that ended the synthesis.
    """

    def __init__(self, cause: TTSError, completed: int, total: int | None) -> None:
        if total is not None:
            done = f"{completed} of {total} segments"
        else:
            done = f"{completed} segment" if completed == 1 else f"{completed} segments"
        super().__init__(
            f"{cause.message.rstrip('.')}; {done} completed before the failure.",
            retryable=cause.retryable,
        )
        self.completed = completed
        self.cause = cause


@dataclass
class SpeechMetrics:
    """What a segmented synthesis adds up to.

    Attributes:
        segments: Segments spoken completely.
        characters: Billed characters, summed over the segments (``None`` when none reported any).
        first_audio_ms: Milliseconds from :attr:`started` to the first audio written.
        pcm_bytes: Bytes of audio written (after rollbacks).
        retries: Segment attempts that were redone.
        outcomes: The outcome of each completed segment, in order.
    """

    started: float = field(default_factory=time.perf_counter)
    segments: int = 0
    characters: int | None = None
    first_audio_ms: int | None = None
    pcm_bytes: int = 0
    retries: int = 0
    outcomes: list[SynthesisOutcome] = field(default_factory=list)

    @property
    def finish_reason(self) -> FinishReason:
        """``stop`` when every segment completed, else the first other reason."""
        return next((o.finish_reason for o in self.outcomes if o.finish_reason != "stop"), "stop")

    def outcome(self) -> SynthesisOutcome:
        """One outcome for the whole text: the first segment's model, session and connection, summed billing.

        Raises:
            InvalidStateError: No segment completed.
        """
        if not self.outcomes:
            raise InvalidStateError("No segment has completed.")
        first = self.outcomes[0]
        return SynthesisOutcome(
            finish_reason=self.finish_reason,
            model=first.model,
            characters=self.characters,
            session_id=first.session_id,
            engine=first.engine,
            reused_connection=first.reused_connection,
            connect_ms=sum(o.connect_ms for o in self.outcomes),
        )


class SegmentedSpeech:
    """Speaks segments in order through one engine, with per-segment retries and summed metrics.

    Args:
        engine: The engine; not closed here.
        request: A resolved request: voice, model and format of every segment (its text is not used).
        retry: Retry policy, applied to each segment; default :class:`~.service.RetryOptions`.
    """

    def __init__(self, engine: Engine, request: SpeechRequest, retry: RetryOptions | None = None) -> None:
        from .service import RetryOptions

        self.engine = engine
        self.request = request
        self.retry = retry or RetryOptions()
        self.metrics = SpeechMetrics()
        self.commit_limit: int | None = None  # learned from a refused commit (see the module docs)

    async def run(
        self,
        segments: Iterable[str] | AsyncIterable[str],
        sink: AudioSink,
        total: Callable[[], int] | None = None,
    ) -> None:
        """Speak every segment, in order, into ``sink``.

        Raises:
            TTSError: The first segment's own error when nothing completed; after that a
                :class:`SegmentsError` that says how many segments completed.
        """
        if isinstance(segments, AsyncIterable):
            async for segment in segments:
                await self._guarded(segment, sink, total)
        else:
            for segment in segments:
                await self._guarded(segment, sink, total)

    async def _guarded(self, segment: str, sink: AudioSink, total: Callable[[], int] | None) -> None:
        try:
            await self.speak(segment, sink)
        except SegmentsError:
            raise
        except TTSError as exc:
            if self.metrics.segments == 0:
                raise
            raise SegmentsError(exc, self.metrics.segments, total() if total is not None else None) from exc

    async def speak(self, segment: str, sink: AudioSink) -> None:
        """Speak one segment into ``sink``, retrying while none of its audio reached a live sink.

        A segment the service refuses before any audio is spoken in shorter pieces (module docs).

        Raises:
            TTSError: The segment failed and could not be retried.
        """
        if self.commit_limit is not None and len(segment) > self.commit_limit:
            for piece in split_text(segment, self.commit_limit):
                await self.speak(piece, sink)
            return
        try:
            await self._speak_once(segment, sink)
        except _Refused as refused:
            self.commit_limit = len(segment) // 2
            logger.warning(
                "the service refused a segment of %d characters (%s); speaking it in pieces of at most %d",
                len(segment),
                refused.error,
                self.commit_limit,
            )
            for piece in split_text(segment, self.commit_limit):
                await self.speak(piece, sink)  # a piece too short to cut again raises the service's error

    async def _speak_once(self, segment: str, sink: AudioSink) -> None:
        request = self.request.model_copy(update={"text": segment})
        metrics = self.metrics
        attempt = 0
        while True:
            written = 0
            try:
                outcome: SynthesisOutcome | None = None
                async with contextlib.aclosing(self.engine.stream(request)) as items:  # type: ignore[type-var]
                    async for item in items:
                        if isinstance(item, AudioChunk):
                            if not item.pcm:
                                continue
                            if metrics.first_audio_ms is None:
                                metrics.first_audio_ms = round((time.perf_counter() - metrics.started) * 1000)
                            written += len(item.pcm)
                            await sink.write(item.pcm)
                        else:
                            outcome = item
                if not written:
                    raise NoAudioError(f"The {self.engine.name} engine produced no audio for non-empty text.")
                if outcome is None:
                    raise NoAudioError(f"The {self.engine.name} engine ended without completing the audio.")
                break
            except TTSError as exc:
                local = isinstance(exc, (OutputError, InvalidStateError))  # a sink's failure: not the service's
                final = not exc.retryable or not self.engine.retry_whole or attempt >= self.retry.max_retries
                if _refused_text(exc) and not written and len(segment) >= 2 * MIN_SPLIT_CHARS:
                    raise _Refused(exc) from exc
                if local or final or (written and sink.live):
                    raise
                if written:
                    try:
                        await sink.rollback(written)  # nothing was delivered: the segment starts again
                    except InvalidStateError:  # a sink that cannot take back part of its audio (encoded)
                        raise exc from None
                delay = self.retry.interval * 2**attempt
                attempt += 1
                metrics.retries += 1
                logger.warning(
                    "segment %d, attempt %d failed (%s); retrying in %.1f s", metrics.segments + 1, attempt, exc, delay
                )
                await asyncio.sleep(delay)
        metrics.segments += 1
        metrics.pcm_bytes += written
        metrics.outcomes.append(outcome)
        if outcome.characters is not None:
            metrics.characters = (metrics.characters or 0) + outcome.characters


def _refused_text(exc: TTSError) -> bool:
    """The service refused the request as such (not a fault, a throttle, a key or the network)."""
    return type(exc) is ServiceError and not exc.retryable and exc.error_type != "server_error"


class _Refused(Exception):  # a signal inside SegmentedSpeech, never raised out of it
    """A segment's text was refused before any of its audio: :meth:`SegmentedSpeech.speak` cuts it."""

    def __init__(self, error: TTSError) -> None:
        super().__init__(str(error))
        self.error = error


_PIECE_CHARS = 1000  # a whole text is segmented this much at a time: the first segment is ready at once


def segments_of(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> Iterator[str]:
    """The segments of a whole text (those of :func:`~.segment.split_text`), cut lazily.

    The text is fed to a :class:`~.segment.Segmenter` a thousand characters at a time, so a
    200,000-character text starts as soon as its first sentence is cut, not after all of it is.
    """
    segmenter = Segmenter(max_chars)
    for start in range(0, len(text), _PIECE_CHARS):
        yield from segmenter.push(text[start : start + _PIECE_CHARS])
    yield from segmenter.flush()


class _Flush:
    """The piece that asks :func:`segments_from` for what is buffered now (:meth:`SynthesizeStream.flush`)."""


_FLUSH = _Flush()


async def segments_from(
    pieces: AsyncIterable[str | _Flush], max_chars: int = DEFAULT_MAX_CHARS, *, idle_flush_s: float | None = None
) -> AsyncIterator[str]:
    """Segments of a text that arrives in ``pieces``, each yielded as soon as it is complete; the end flushes.

    A Latin sentence end is certain only once the next word arrives (``Dr. Smith`` goes on, ``ends. Then``
    does not). With ``idle_flush_s``, a pending text that would end a sentence if a new sentence
    followed is spoken once no piece arrived for that long: a writer that pauses after a sentence
    (a person typing, an LLM thinking) is heard without waiting for its next word.
    """
    segmenter = Segmenter(max_chars)
    iterator = aiter(pieces)
    waiting: asyncio.Future[str | _Flush] | None = None
    try:
        while True:
            if waiting is None:
                waiting = asyncio.ensure_future(anext(iterator))
            timeout = (
                idle_flush_s if idle_flush_s is not None and _ends_sentence(segmenter.pending, max_chars) else None
            )
            done, _ = await asyncio.wait({waiting}, timeout=timeout)
            if not done:
                for segment in segmenter.flush():
                    yield segment
                continue
            future, waiting = waiting, None
            try:
                piece = future.result()
            except StopAsyncIteration:
                break
            for segment in segmenter.flush() if isinstance(piece, _Flush) else segmenter.push(piece):
                yield segment
    finally:
        if waiting is not None:
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await waiting
    for segment in segmenter.flush():
        yield segment


def _ends_sentence(pending: str, max_chars: int) -> bool:
    """Whether ``pending`` ends where a sentence would end if a new one followed (the segmenter's own rule)."""
    if not pending.strip():
        return False
    from .segment import split_text

    probe = split_text(f"{pending} A", max_chars)  # "A": a capital, so no continuation
    return len(probe) >= 2 and probe[-1] == "A"


_END = object()


class _QueueSink(AudioSink):
    """A live sink that hands each chunk to the stream's reader (bounded: a slow reader slows the worker)."""

    live = True

    def __init__(self, queue: asyncio.Queue[AudioChunk | BaseException | object], sample_rate: int) -> None:
        self._queue = queue
        self._rate = sample_rate

    async def write(self, pcm: bytes) -> None:
        await self._queue.put(AudioChunk(pcm, self._rate))

    async def rollback(self, nbytes: int) -> None:
        raise InvalidStateError("Audio handed to a stream's reader cannot be taken back.")

    async def close(self) -> None:
        """Nothing to finalize: the stream's worker puts its own end marker."""

    async def abort(self) -> None:
        """Nothing to discard: what was queued belongs to the reader."""


class SynthesizeStream:
    """Speech for text that arrives in pieces: push text, iterate audio.

    Create one with :meth:`.engines.base.Engine.open_stream`. Use it as an async context manager
    (or call :meth:`aclose`); iterate it for :class:`~.models.AudioChunk` values in text order. The
    iteration ends after :meth:`end_input` once everything is spoken, and raises the error that
    ended the synthesis (a :class:`SegmentsError` once segments had completed). Audio handed to the
    reader is delivered, so a segment is retried only while none of its audio was handed out.

    Args:
        engine: The engine; not closed by the stream.
        request: A resolved request (voice, model, format); its text is not spoken.
        max_segment_chars: Longest segment (``DASHSCOPE_MAX_SEGMENT_CHARS``).
        retry: Per-segment retry policy.
        idle_flush_s: A Latin sentence end is certain only once the next word arrives; a pending
            sentence that looks finished is spoken once no text was pushed for this long (an LLM
            that pauses after a sentence is heard without waiting for its next word). None: only
            the next word, :meth:`flush` or :meth:`end_input` release it.
    """

    def __init__(
        self,
        engine: Engine,
        request: SpeechRequest,
        *,
        max_segment_chars: int = DEFAULT_MAX_CHARS,
        retry: RetryOptions | None = None,
        idle_flush_s: float | None = IDLE_FLUSH_S,
    ) -> None:
        self._speech = SegmentedSpeech(engine, request, retry)
        self._max_chars = max_segment_chars
        self._idle_flush_s = idle_flush_s
        # The text as pushed, cut by the worker (segments_from: sentences, the pause rule, flushes).
        self._pieces: asyncio.Queue[str | _Flush | object] = asyncio.Queue()
        self._audio: asyncio.Queue[AudioChunk | BaseException | object] = asyncio.Queue(maxsize=64)
        self._sink = _QueueSink(self._audio, request.sample_rate)
        self._worker: asyncio.Task[None] | None = None
        self._ended = False
        self._finished = False
        self.committed: list[str] = []
        """Segments handed to the engine so far, in order."""

    @property
    def metrics(self) -> SpeechMetrics:
        """Segments, billed characters and first audio so far."""
        return self._speech.metrics

    # --- input --------------------------------------------------------------------------------

    def push_text(self, text: str) -> None:
        """Add text; every sentence it completes is queued for speaking at once.

        Raises:
            InvalidStateError: After :meth:`end_input` or :meth:`aclose`.
        """
        self._check_input()
        self._queue(text)

    def flush(self) -> None:
        """Speak what is buffered now, even an unfinished sentence."""
        self._check_input()
        self._queue(_FLUSH)

    def end_input(self) -> None:
        """No more text: the rest is spoken, then the iteration ends. Idempotent."""
        if self._ended:
            return
        self._ended = True
        self._queue(_END)

    def _check_input(self) -> None:
        if self._ended:
            raise InvalidStateError("The stream's input has ended; open a new stream for more text.")

    def _queue(self, piece: str | _Flush | object) -> None:
        self._pieces.put_nowait(piece)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="synthesize stream")

    async def _next_pieces(self) -> AsyncIterator[str | _Flush]:
        while (piece := await self._pieces.get()) is not _END:
            assert isinstance(piece, (str, _Flush))
            yield piece

    async def _next_segments(self) -> AsyncIterator[str]:
        pieces = self._next_pieces()
        async for segment in segments_from(pieces, self._max_chars, idle_flush_s=self._idle_flush_s):
            self.committed.append(segment)
            yield segment

    async def _work(self) -> None:
        try:
            await self._speech.run(self._next_segments(), self._sink)
        except BaseException as exc:  # handed to the reader, who re-raises it
            if isinstance(exc, asyncio.CancelledError):
                raise
            await self._audio.put(exc)
            return
        await self._audio.put(_END)

    # --- output -------------------------------------------------------------------------------

    def __aiter__(self) -> SynthesizeStream:
        return self

    async def __anext__(self) -> AudioChunk:
        if self._finished:
            raise StopAsyncIteration
        if self._worker is None and self._audio.empty() and self._ended:
            self._finished = True
            raise StopAsyncIteration
        item = await self._audio.get()
        if isinstance(item, AudioChunk):
            return item
        self._finished = True
        if isinstance(item, BaseException):
            raise item
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop everything: the input ends, the synthesis in progress stops and its socket closes. Idempotent."""
        self._ended = True
        self._finished = True
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def __aenter__(self) -> SynthesizeStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

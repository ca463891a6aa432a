"""The engine interface every synthesizer implements.

An engine turns one resolved :class:`~..models.SpeechRequest` into audio. :meth:`Engine.stream`
is an async generator that yields :class:`~..models.AudioChunk` values as audio arrives and, last,
exactly one :class:`~..models.SynthesisOutcome`. Closing the generator early (``aclose()``, or a
cancelled task) must stop the work at once: the realtime engine closes its WebSocket, the offline
engine stops its synthesis. Engines raise only :class:`~..errors.TTSError` subclasses and never
retry; the retry policy lives in :mod:`..service`.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar

from ..models import AudioChunk, SpeechRequest, SynthesisOutcome
from ..stream import IDLE_FLUSH_S

if TYPE_CHECKING:
    from ..service import RetryOptions
    from ..stream import SynthesizeStream

__all__ = ["Capabilities", "Engine", "StreamItem"]

StreamItem = AudioChunk | SynthesisOutcome


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do, so callers can choose and explain.

    Attributes:
        remote: Talks to the paid service (needs a key).
        streaming: Yields audio before synthesis is complete.
        instructions: Honours ``instruction``.
    """

    remote: bool
    streaming: bool
    instructions: bool


class Engine(abc.ABC):
    """Base class of engines; an async context manager that owns any long-lived resources."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    retry_whole: ClassVar[bool] = True
    """Whether the service may retry this engine after a retryable failure before audio. A
    composite that already tried its engines in turn (the fallback) says no: each retry would
    redo every engine, so one call would fall back again and again."""

    @abc.abstractmethod
    def stream(self, request: SpeechRequest) -> AsyncIterator[StreamItem]:
        """Synthesize ``request`` (already resolved), yielding chunks then one outcome.

        Raises:
            TTSError: Any failure, typed; see :mod:`..errors`.
        """

    @property
    def segments_itself(self) -> bool:
        """Whether the engine cuts a long text into sentences itself (then it gets the whole text at once)."""
        return False

    def open_stream(
        self,
        request: SpeechRequest,
        *,
        max_segment_chars: int | None = None,
        retry: RetryOptions | None = None,
        idle_flush_s: float | None = IDLE_FLUSH_S,
    ) -> SynthesizeStream:
        """A :class:`~..stream.SynthesizeStream` for text that arrives in pieces, spoken with ``request``'s voice.

        Named ``open_stream`` rather than ``stream``: :meth:`stream` already is the one-request
        generator every engine implements, and this opens a long-lived object on top of it
        (``push_text()``, ``flush()``, ``end_input()``, async iteration of audio, ``aclose()``).

        Args:
            request: Voice, model and format, e.g. :func:`~..stream.voice_options` (any text it
                has is not spoken); it is resolved here, before anything is sent.
            max_segment_chars: Longest segment; default 300 (``DASHSCOPE_MAX_SEGMENT_CHARS``).
            retry: Per-segment retry policy.
            idle_flush_s: A sentence that looks finished is spoken once no text was pushed for
                this long (:data:`~..stream.IDLE_FLUSH_S`); None waits for the next word.

        Raises:
            InvalidRequestError: The request does not fit its model.
        """
        from ..segment import DEFAULT_MAX_CHARS
        from ..stream import SynthesizeStream

        return SynthesizeStream(
            self,
            request.resolved(),
            max_segment_chars=max_segment_chars or DEFAULT_MAX_CHARS,
            retry=retry,
            idle_flush_s=idle_flush_s,
        )

    async def aclose(self) -> None:
        """Release long-lived resources (connections, worker threads). Idempotent."""

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

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
from typing import ClassVar

from ..models import AudioChunk, SpeechRequest, SynthesisOutcome

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

    async def aclose(self) -> None:
        """Release long-lived resources (connections, worker threads). Idempotent."""

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

"""Composition: try engines in order; the next one runs only if the previous produced no audio.

``FallbackEngine([RealtimeEngine(s), HttpEngine(s)])`` is the ``fallback`` engine choice: realtime
first, then the non-realtime HTTP API. The rule that makes a fallback safe is the same as the
retry rule in :mod:`..service`: once any audio has reached the caller, a failure is final, so the
same text is never spoken twice (style: LiveKit's ``FallbackAdapter``).

Only a :class:`~..errors.RemoteError` moves on to the next engine. A local error (bad input,
missing key) from the first engine would fail the same way everywhere, so it is raised at once; a
later engine's local error means it cannot serve this particular request (the HTTP API has no
16 kHz output, for example) and it is skipped. When no engine produced audio, the last remote
failure is raised, and the earlier ones are logged as warnings. The service does not retry the
composite as a whole (:attr:`~.base.Engine.retry_whole`), so a call falls back at most once and
makes at most one attempt per engine; the caller's deadline bounds them together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence

from ..errors import InvalidRequestError, LocalError, RemoteError, TTSError
from ..models import AudioChunk, SpeechRequest
from .base import Capabilities, Engine, StreamItem

__all__ = ["FallbackEngine"]

logger = logging.getLogger(__name__)


class FallbackEngine(Engine):
    """Tries ``engines`` in order until one produces audio.

    The outcome's ``engine`` names the engine that produced the audio. The engines are owned:
    :meth:`aclose` closes them all.

    Args:
        engines: At least two engines, the preferred one first.

    Raises:
        InvalidRequestError: Fewer than two engines.
    """

    name = "fallback"
    capabilities = Capabilities(remote=True, streaming=True, instructions=True)
    retry_whole = False  # it falls back at most once per call: the next engine is its retry

    def __init__(self, engines: Sequence[Engine]) -> None:
        if len(engines) < 2:
            raise InvalidRequestError("A fallback needs at least two engines.", field="engine")
        self.engines: tuple[Engine, ...] = tuple(engines)
        self.capabilities = Capabilities(  # type: ignore[misc]
            remote=any(e.capabilities.remote for e in self.engines),
            streaming=all(e.capabilities.streaming for e in self.engines),
            instructions=all(e.capabilities.instructions for e in self.engines),
        )

    async def stream(self, request: SpeechRequest) -> AsyncIterator[StreamItem]:
        last_failure: RemoteError | None = None
        for engine in self.engines:
            produced = False
            try:
                async with contextlib.aclosing(engine.stream(request)) as stream:  # type: ignore[type-var]
                    async for item in stream:
                        if isinstance(item, AudioChunk):
                            produced = produced or bool(item.pcm)
                            yield item
                        else:
                            yield dataclasses.replace(item, engine=item.engine or engine.name)
                return
            except RemoteError as exc:
                if produced:
                    raise  # never speak the same text twice
                last_failure = exc
                logger.warning("%s engine failed before any audio: %s", engine.name, exc)
            except LocalError as exc:
                if last_failure is None:
                    raise  # the first engine's local error would be everyone's
                logger.warning("%s engine cannot serve this request: %s", engine.name, exc)
        assert last_failure is not None
        raise last_failure

    async def aclose(self) -> None:
        errors: list[TTSError] = []
        for engine in self.engines:
            try:
                await engine.aclose()
            except TTSError as exc:  # close every engine even if one fails
                errors.append(exc)
        if errors:
            raise errors[0]

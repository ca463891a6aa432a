"""An engine wrapper that notes when each utterance starts, for tests and benchmarks of pacing."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from alicloud_tts_realtime.engines.base import Engine, StreamItem
from alicloud_tts_realtime.engines.realtime import RealtimeEngine
from alicloud_tts_realtime.models import SpeechRequest


class TimedEngine(Engine):
    """Passes every utterance to ``inner``, noting in ``starts`` when each one starts (after any pacer)."""

    name = "realtime"
    capabilities = RealtimeEngine.capabilities

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.starts: list[float] = []

    async def stream(self, request: SpeechRequest) -> AsyncIterator[StreamItem]:
        self.starts.append(time.monotonic())
        async with contextlib.aclosing(self.inner.stream(request)) as stream:  # type: ignore[type-var]
            async for item in stream:
                yield item

"""The DashScope realtime engine: utterances over pooled, long-lived WebSocket connections.

One synthesis is one utterance (append + commit → audio deltas → ``response.done``, §3.5) on a
:class:`~..connection.RealtimeConnection` taken from the engine's :class:`~..pool.SessionPool`.
After a clean utterance the connection goes back to the pool, configured for its voice, so the
next call with the same voice configuration skips the handshake. The engine is long-lived:
:meth:`RealtimeEngine.aclose` closes every pooled socket.

A pooled socket may have died while idle (the service's idle timeout is unknown): when a reused
socket fails before the service said anything about our text, the utterance is sent again at once
on a fresh connection. That is not a retry in :mod:`..service`'s sense: the text was never spoken.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from .. import protocol as p
from ..connection import RealtimeConnection, build_url, map_websocket_errors, status_error
from ..errors import TTSError, close_error
from ..models import AudioChunk, SpeechRequest, SynthesisOutcome
from ..pool import SessionPool
from ..settings import Settings
from .base import Capabilities, Engine, StreamItem

__all__ = ["RealtimeEngine", "build_url", "close_error", "map_websocket_errors", "status_error"]


class RealtimeEngine(Engine):
    """Speaks through the DashScope realtime WebSocket, reusing connections through a pool.

    Args:
        settings: Key, endpoint, workspace, timeouts and the pool's limits
            (``max_connections``, ``pool_idle_s``, ``pool_max_age_s``, ``ws_deflate``).
        connect: Seam for tests: a ``websockets.asyncio.client.connect``-compatible callable.
            Defaults to the real one.
        mode: ``commit`` (default): the whole text is one response, a deterministic turn that a
            pooled session repeats. ``server_commit``: the service segments the text (§3.6); such a
            session ends with the utterance, so it is never pooled.
        pipeline: Send a commit while the connection's previous response is still running
            (opt-in; the service may queue or reject it).
    """

    name = "realtime"
    capabilities = Capabilities(remote=True, streaming=True, instructions=True)

    def __init__(
        self,
        settings: Settings,
        *,
        connect: Callable[..., Any] | None = None,
        mode: Literal["commit", "server_commit"] = "commit",
        pipeline: bool = False,
    ) -> None:
        self._settings = settings
        self._connect = connect
        self._mode = mode
        self._pipeline = pipeline
        self._pool: SessionPool | None = None

    @property
    def segments_itself(self) -> bool:
        """``server_commit``: the service segments the text (§3.6), so it gets the whole text in one session."""
        return self._mode == "server_commit"

    @property
    def pool(self) -> SessionPool:
        """The engine's pool, created on first use (it belongs to the running event loop)."""
        if self._pool is None:
            s = self._settings
            self._pool = SessionPool(
                self._open, max_connections=s.max_connections, idle_s=s.pool_idle_s, max_age_s=s.pool_max_age_s
            )
        return self._pool

    async def _open(self, model: str) -> RealtimeConnection:
        return await RealtimeConnection.open(self._settings, model, connect=self._connect, pipeline=self._pipeline)

    @staticmethod
    def session_config(request: SpeechRequest, mode: Literal["commit", "server_commit"] = "commit") -> p.SessionConfig:
        """The ``session.update`` body for a resolved request (PCM; ``commit`` mode by default)."""
        fields: dict[str, Any] = {
            "voice": request.voice,
            "mode": mode,
            "response_format": "pcm",
            "sample_rate": request.sample_rate,
        }
        if request.language_type:
            fields["language_type"] = request.language_type
        if request.instruction:
            fields["instructions"] = request.instruction
        return p.SessionConfig(**fields)

    async def prewarm(self, request: SpeechRequest, n: int = 1) -> int:
        """Open and configure up to ``n`` connections for ``request``'s voice ahead of need.

        Raises:
            TTSError: Opening failed (the key is refused, the service is unreachable …).
        """
        assert request.model is not None, "resolve the request first (SpeechRequest.resolved())"
        return await self.pool.prewarm(request.model, self.session_config(request, self._mode), n)

    async def stream(self, request: SpeechRequest) -> AsyncIterator[StreamItem]:
        assert request.model is not None, "resolve the request first (SpeechRequest.resolved())"
        config = self.session_config(request, self._mode)
        if self._mode == "server_commit":
            async for item in self._one_session(request, config):
                yield item
            return
        fresh = False
        while True:
            conn, reused = await self.pool.acquire(request.model, config, fresh=fresh)
            clean = False
            speech = conn.speak(request.text)
            try:
                async with speech as utt:
                    async for pcm in utt:
                        yield AudioChunk(pcm, request.sample_rate)
                outcome = utt.outcome
                clean = True
            except TTSError:
                said = speech.utterance
                if reused and not fresh and (said is None or not (said.heard or said.got_audio)):
                    fresh = True  # a pooled socket that died while idle: the text was never spoken
                    continue
                raise
            finally:
                await self.pool.release(conn, clean=clean)
            yield outcome
            return

    async def _one_session(self, request: SpeechRequest, config: p.SessionConfig) -> AsyncIterator[StreamItem]:
        """``server_commit``: a connection of its own, closed when the session finished."""
        assert request.model is not None
        conn = await RealtimeConnection.open(self._settings, request.model, connect=self._connect)
        outcome: SynthesisOutcome | None = None
        try:
            await conn.configure(config)
            async with conn.speak(request.text) as utt:
                async for pcm in utt:
                    yield AudioChunk(pcm, request.sample_rate)
            outcome = utt.outcome
        finally:
            with contextlib.suppress(Exception):
                await conn.aclose()
        assert outcome is not None
        yield outcome

    async def aclose(self) -> None:
        """Close every pooled socket. Idempotent; the engine opens a new pool if used again."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()

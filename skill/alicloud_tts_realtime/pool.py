"""A bounded pool of open realtime connections, keyed by model and session configuration.

A configured realtime session serves one voice configuration for life (the service refuses
``session.update`` after text, §3.2), so the pool key is the model plus the whole ``session``
object (voice, sample rate, format, mode, language type, instructions …). :meth:`SessionPool.acquire`
hands out a READY connection:

1. an idle one configured for that key (reused, no handshake);
2. else an idle connected-but-unconfigured one for that model, configured on the spot;
3. else a new connection, when fewer than ``max_connections`` sockets are open (idle ones
   included: personal accounts may hold 3 at once); else an idle socket of another key is evicted
   to make room; else the caller queues until a socket is released.

:meth:`SessionPool.release` takes a connection back only after a clean utterance; anything else
(an error, a cancel, a timeout) discards it, and closing it stops the billing. Idle sockets live
``idle_s`` seconds and no socket outlives ``max_age_s``. A socket the server closed while idle
leaves the pool by itself (its reader tells the pool), so the next caller never sees it.
Ideas from livekit/agents' ``ConnectionPool`` (``utils/connection_pool.py``): a prewarm, a max
session duration, connections that come back only when they are still good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from . import protocol as p
from .connection import RealtimeConnection, anyio_shield
from .errors import InvalidStateError

__all__ = ["PoolKey", "SessionPool", "pool_key"]

logger = logging.getLogger(__name__)

PoolKey = tuple[str, str]  # (model, the session configuration as canonical JSON)
Opener = Callable[[str], Awaitable[RealtimeConnection]]


def pool_key(model: str, config: p.SessionConfig | None) -> PoolKey:
    """The key of a model and a configuration (``None``: connected, not configured)."""
    return model, "" if config is None else config.model_dump_json(exclude_none=True)


@dataclass
class _Idle:
    conn: RealtimeConnection
    key: PoolKey
    since: float = field(default_factory=time.monotonic)
    timer: asyncio.TimerHandle | None = None


class SessionPool:
    """At most ``max_connections`` realtime sockets, idle ones kept for the next caller of the same key.

    Args:
        opener: Opens a new connection for a model (CREATED, not configured).
        max_connections: Open sockets at most, idle and busy together (``DASHSCOPE_MAX_CONNECTIONS``).
        idle_s: How long an idle socket is kept (``DASHSCOPE_POOL_IDLE_S``).
        max_age_s: No socket is handed out once it is this old.
    """

    def __init__(self, opener: Opener, *, max_connections: int = 3, idle_s: float = 60.0, max_age_s: float = 900.0):
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self._opener = opener
        self.max_connections = max_connections
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self._open: set[RealtimeConnection] = set()  # every socket counted against the cap
        self._reserved = 0  # slots taken by connections being opened
        self._idle: list[_Idle] = []  # oldest first
        self._changed = asyncio.Condition()
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.peak_open = 0

    @property
    def open_count(self) -> int:
        """Sockets open or opening, idle ones included."""
        return len(self._open) + self._reserved

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    # --- acquire ------------------------------------------------------------------------------

    async def acquire(
        self, model: str, config: p.SessionConfig | None, *, fresh: bool = False
    ) -> tuple[RealtimeConnection, bool]:
        """A connection for ``(model, config)``, configured (unless ``config`` is ``None``).

        Args:
            model: The model.
            config: The session configuration; ``None`` for a connected, unconfigured one.
            fresh: Skip idle sockets (after a pooled one turned out stale).

        Returns:
            The connection and whether it was already open (reused).

        Raises:
            InvalidStateError: The pool is closed.
            TTSError: Opening or configuring a new connection failed.
        """
        key = pool_key(model, config)
        bare = pool_key(model, None)
        evict: RealtimeConnection | None = None
        async with self._changed:
            while True:
                if self._closed:
                    raise InvalidStateError("The connection pool is closed.")
                self._drop_stale()
                entry = None if fresh else self._take(key) or (self._take(bare) if config is not None else None)
                if entry is not None:
                    break
                if self.open_count < self.max_connections:
                    self._reserved += 1
                    break
                if self._idle:  # full: make room by evicting the oldest idle socket of another key
                    victim = self._idle.pop(0)
                    self._cancel_timer(victim)
                    self._open.discard(victim.conn)
                    evict = victim.conn
                    self._reserved += 1
                    logger.info("pool full: evicting an idle connection to open another")
                    break
                await self._changed.wait()
        if evict is not None:
            with anyio_shield():
                await evict.aclose(graceful=True)
        if entry is not None:
            conn = entry.conn
            if conn.config is None and config is not None:
                await self._configure(conn, config)
            return conn, True
        try:
            conn = await self._opener(model)
        except BaseException:
            async with self._changed:
                self._reserved -= 1
                self._changed.notify()
            raise
        async with self._changed:
            self._reserved -= 1
            self._open.add(conn)
            self.peak_open = max(self.peak_open, self.open_count)
        conn.on_close(self._lost)
        if config is not None:
            await self._configure(conn, config)
        return conn, False

    async def _configure(self, conn: RealtimeConnection, config: p.SessionConfig) -> None:
        """Configure a connection just handed out; one that fails to take it is released as broken."""
        try:
            await conn.configure(config)
        except BaseException:
            await self.release(conn, clean=False)
            raise

    def _take(self, key: PoolKey) -> _Idle | None:
        for i, entry in enumerate(self._idle):
            if entry.key == key:
                del self._idle[i]
                self._cancel_timer(entry)
                return entry
        return None

    def _drop_stale(self) -> None:
        """Forget idle sockets that are closed or too old (closing them happens in the background)."""
        now = time.monotonic()
        for entry in list(self._idle):
            if not entry.conn.reusable or now - entry.conn.opened_at >= self.max_age_s:
                self._idle.remove(entry)
                self._cancel_timer(entry)
                self._discard_soon(entry.conn)

    # --- release ------------------------------------------------------------------------------

    async def release(self, conn: RealtimeConnection, *, clean: bool) -> None:
        """Give ``conn`` back: kept idle after a clean utterance, else closed (which stops billing)."""
        keep = (
            clean
            and not self._closed
            and conn.reusable
            and time.monotonic() - conn.opened_at < self.max_age_s
            and conn in self._open
        )
        if keep:
            async with self._changed:
                entry = _Idle(conn, pool_key(conn.model, conn.config))
                entry.timer = asyncio.get_running_loop().call_later(self.idle_s, self._expire, entry)
                self._idle.append(entry)
                self._changed.notify()
            return
        with anyio_shield():
            await conn.aclose()
            async with self._changed:
                self._open.discard(conn)
                self._changed.notify()

    def _expire(self, entry: _Idle) -> None:
        if entry in self._idle:
            self._idle.remove(entry)
            logger.info("closing a connection idle for %g s", self.idle_s)
            self._discard_soon(entry.conn, graceful=True)

    def _discard_soon(self, conn: RealtimeConnection, *, graceful: bool = False) -> None:
        self._open.discard(conn)
        self._spawn(conn.aclose(graceful=graceful))
        self._spawn(self._notify())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lost(self, conn: RealtimeConnection) -> None:
        """A socket ended (the server closed it, or we did): free its slot and wake a waiter."""
        for entry in list(self._idle):
            if entry.conn is conn:
                self._idle.remove(entry)
                self._cancel_timer(entry)
        if conn in self._open:
            self._open.discard(conn)
            self._spawn(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @staticmethod
    def _cancel_timer(entry: _Idle) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None

    # --- prewarm and close --------------------------------------------------------------------

    async def prewarm(self, model: str, config: p.SessionConfig | None, n: int = 1) -> int:
        """Open (and configure) up to ``n`` connections ahead of need; return how many were added.

        Never exceeds the cap, and never waits for a busy socket. The first utterance on a
        prewarmed socket reports ``reused_connection`` (it paid no handshake).
        """
        added = 0
        for _ in range(n):
            if self.open_count >= self.max_connections or self._closed:
                break
            conn, _reused = await self.acquire(model, config, fresh=True)
            conn.fresh = False
            await self.release(conn, clean=True)
            added += 1
        return added

    async def aclose(self) -> None:
        """Close every socket, idle or busy; later acquires fail. Idempotent."""
        self._closed = True
        async with self._changed:
            conns = list(self._open)
            for entry in self._idle:
                self._cancel_timer(entry)
            self._idle.clear()
            self._open.clear()
            self._changed.notify_all()
        with anyio_shield():
            await asyncio.gather(*(conn.aclose(graceful=True) for conn in conns), return_exceptions=True)
            for task in list(self._tasks):
                with contextlib.suppress(Exception):
                    await task

"""One speaker per MCP server: playbacks heard one after another, in call order, never overlapping.

The server creates one :class:`Speaker` in its lifespan (``async with Speaker() as speaker``).
Each ``play: true`` call asks it for a :class:`Turn` before its synthesis starts, so the order of
the queue is the order of the calls; the turn's :class:`~.playback.Playback` buffers the audio as
it arrives, and the speaker's own task starts each player when its turn comes (the one playing
may still be receiving audio: it is heard from its first chunk). ``interrupt`` stops what is
playing and clears the queue; :meth:`Speaker.stop` (the ``tts_stop`` tool) does that and also
cancels the syntheses of those turns still running. Leaving the ``async with`` block stops every
player: none outlives the server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from .errors import InvalidStateError
from .playback import NO_PLAYER, Playback, PlayerFinder

__all__ = ["MAX_QUEUED", "PlaybackState", "Speaker", "Turn"]

logger = logging.getLogger(__name__)

MAX_QUEUED = 20
PlaybackState = Literal["playing", "queued", "unavailable", "stopped"]


@dataclass(eq=False)
class Turn:
    """One call's place in the speaker's queue.

    Attributes:
        label: What it plays, for ``tts_stop``'s answer (a short excerpt of the text).
        playback: Its playback, or None when there is no player (``unavailable``).
        cancel: Cancels the call's synthesis while it runs (set by the call, cleared after).
        stopped: True once stopped by ``tts_stop`` or an interrupt.
        was: Its state when it was stopped.
        was_synthesizing: Whether its synthesis was still running when it was stopped.
    """

    label: str
    playback: Playback | None
    cancel: Callable[[], None] | None = None
    stopped: bool = False
    was: PlaybackState = "queued"
    was_synthesizing: bool = False

    @property
    def state(self) -> PlaybackState:
        if self.playback is None or self.playback.error is not None:
            return "unavailable"
        if self.stopped or self.playback.stopped:
            return "stopped"
        return "playing" if self.playback.started else "queued"

    @property
    def detail(self) -> str | None:
        """Why nothing is heard, when that is so."""
        if self.playback is None:
            return NO_PLAYER
        return self.playback.error


class Speaker:
    """The server's one playback queue; see the module docstring.

    Args:
        finder: Finds the player (default: a new :class:`~.playback.PlayerFinder` on ``PATH``).
        max_queued: Most turns waiting behind the one playing.
    """

    def __init__(self, finder: PlayerFinder | None = None, *, max_queued: int = MAX_QUEUED) -> None:
        self._finder = finder or PlayerFinder()
        self._max_queued = max_queued
        self._queue: collections.deque[Turn] = collections.deque()
        self._current: Turn | None = None
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Speaker:
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="speaker")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every player and the speaker's task (the server is exiting)."""
        turns = self._take_all()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.wait({self._worker})
            self._worker = None
        await asyncio.gather(*(turn.playback.stop() for turn in turns if turn.playback is not None))

    def kill_now(self) -> None:
        """SIGKILL every player at once, from a signal handler when the process is about to exit."""
        for turn in ([self._current] if self._current is not None else []) + list(self._queue):
            if turn.playback is not None:
                turn.playback.kill_now()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def turn(self, sample_rate: int, label: str, *, interrupt: bool = False) -> Turn:
        """A new turn at the end of the queue (or, with ``interrupt``, the only one, playing now).

        Raises:
            InvalidStateError: The queue is full, or the speaker is closed.
        """
        if self._worker is None:
            raise InvalidStateError("The speaker is closed.")
        if not interrupt and len(self._queue) >= self._max_queued:
            raise InvalidStateError(
                f"The speaker already has {self._max_queued} playbacks queued; wait for them, call tts_stop, "
                "or pass interrupt: true."
            )
        playback = await self._finder.open(sample_rate)
        turn = Turn(label, playback)
        if interrupt:
            await self._stop_turns(self._take_all(), cancel=False)
        if playback is None:
            return turn
        if self._current is None and not self._queue:
            # Nothing ahead: the player starts now, so it is ready before the first audio.
            self._current = turn
            await playback.start()
        else:
            self._queue.append(turn)
        self._wake.set()
        return turn

    async def stop(self) -> list[Turn]:
        """Stop what is playing, clear the queue, cancel those turns' running syntheses; return them."""
        turns = self._take_all()
        await self._stop_turns(turns, cancel=True)
        return turns

    def _take_all(self) -> list[Turn]:
        turns = ([self._current] if self._current is not None else []) + list(self._queue)
        self._queue.clear()
        self._current = None
        return turns

    async def _stop_turns(self, turns: list[Turn], *, cancel: bool) -> None:
        for turn in turns:
            turn.was, turn.was_synthesizing = turn.state, turn.cancel is not None
            turn.stopped = True
            if cancel and turn.cancel is not None:
                turn.cancel()
        await asyncio.gather(*(turn.playback.stop() for turn in turns if turn.playback is not None))

    async def _work(self) -> None:
        while True:
            turn = self._current
            if turn is None:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                turn = self._queue.popleft()
                if turn.stopped or turn.playback is None or turn.playback.done:
                    continue
                self._current = turn
            playback = turn.playback
            assert playback is not None
            try:
                await playback.start()
                await playback.finished()
            except asyncio.CancelledError:
                raise
            except Exception:  # one broken playback never stops the speaker
                logger.exception("playback failed")
                with contextlib.suppress(Exception):
                    await playback.stop()
            finally:
                if self._current is turn:
                    self._current = None

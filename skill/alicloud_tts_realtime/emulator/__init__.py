"""A local emulator of the DashScope Qwen TTS realtime service, for tests and offline demos.

``async with serve_emulator(EmulatorConfig(...)) as emulator:`` serves the realtime WebSocket on
``emulator.url`` (port 0 picks a free port; the handle reports the real one), and the
non-realtime HTTP API on ``emulator.http_base_url`` (:mod:`.http_api`), until the block ends.
:func:`run_emulator` serves until cancelled, for the CLI. Behaviour follows the emulator
checklist of ``dashscope-protocol.md`` §9; :class:`EmulatorConfig` holds every knob and
:class:`Fault` scripts faults for chosen connections. Counters are on the handle
(:attr:`Emulator.stats`) and, for tests in other processes, at ``GET /_emulator/stats``
(:attr:`Emulator.stats_url`, same ``Authorization`` header as the service).

Importing this package starts nothing and imports neither uvicorn nor Starlette.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .config import AudioMode, CommitWhileResponding, EmulatorConfig, Fault, parse_fault
from .stats import STATS_PATH, EmulatorStats

if TYPE_CHECKING:
    import uvicorn
    from starlette.routing import BaseRoute

    from .server import EmulatorState, SessionRecord

__all__ = [
    "AudioMode",
    "CommitWhileResponding",
    "Emulator",
    "EmulatorConfig",
    "EmulatorStats",
    "Fault",
    "parse_fault",
    "run_emulator",
    "serve_emulator",
]

logger = logging.getLogger(__name__)


class Emulator:
    """A running emulator: where it listens and what it has seen.

    Attributes:
        config: The behaviour knobs it runs with.
        host: The interface it listens on.
        port: The port it actually listens on (the bound one when 0 was asked for).
    """

    def __init__(self, state: EmulatorState, host: str, port: int) -> None:
        self._state = state
        self.config: EmulatorConfig = state.config
        self.host = host
        self.port = port

    @property
    def _netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The realtime endpoint, ``ws://host:port/api-ws/v1/realtime`` (clients add ``?model=``)."""
        return f"ws://{self._netloc}/api-ws/v1/realtime"

    @property
    def http_base_url(self) -> str:
        """The HTTP API base, ``http://host:port/api/v1``."""
        return f"http://{self._netloc}/api/v1"

    @property
    def stats_url(self) -> str:
        """``http://host:port/_emulator/stats``: :attr:`stats` as JSON (send the same ``Authorization``)."""
        return f"http://{self._netloc}{STATS_PATH}"

    @property
    def open_sessions(self) -> int:
        """WebSocket sessions currently open."""
        return self._state.stats.open_sessions

    @property
    def peak_open_sessions(self) -> int:
        """The most WebSocket connections that were open at once."""
        return self._state.stats.peak_open_sessions

    @property
    def connections_total(self) -> int:
        """WebSocket connections accepted since the start (refused upgrades not included)."""
        return self._state.stats.connections_total

    @property
    def commits(self) -> int:
        """Commits accepted since the start (answered with ``input_text_buffer.committed``)."""
        return self._state.stats.commits

    @property
    def max_commit_chars_seen(self) -> int:
        """The longest text one commit carried, in code points (rejected commits included)."""
        return self._state.stats.max_commit_chars_seen

    @property
    def stats(self) -> EmulatorStats:
        """Every counter (live: the emulator updates this object)."""
        return self._state.stats

    @property
    def sessions(self) -> list[SessionRecord]:
        """One record per recent connection attempt (refused ones included), oldest first.

        At most ``config.max_session_records`` are kept; this is a copy.
        """
        return list(self._state.sessions)

    def __repr__(self) -> str:
        return f"<Emulator {self.url} open_sessions={self.open_sessions}>"


@contextlib.asynccontextmanager
async def serve_emulator(
    config: EmulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    extra_routes: Sequence[BaseRoute] = (),
) -> AsyncIterator[Emulator]:
    """Serve the emulator while the block runs (asyncio only, as uvicorn is).

    Args:
        config: Behaviour knobs; the defaults imitate the observed real service.
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one (read it from ``emulator.port``).
        extra_routes: More Starlette routes on the same port (the HTTP API is always served).

    Raises:
        ConfigurationError: The address cannot be bound.
        EngineUnavailableError: ``audio="speech"`` without the offline extra installed.
    """
    import anyio

    from .http_api import http_routes
    from .server import EmulatorState, build_app, build_server

    state = EmulatorState(config or EmulatorConfig())
    if state.config.audio == "speech":
        state.audio.require_speech()
    # The non-realtime HTTP API (§6) shares the port, the key and the audio source.
    server = build_server(build_app(state, [*http_routes(state), *extra_routes]), host, port)
    task = asyncio.create_task(_serve(server), name=f"emulator {host}:{port}")
    try:
        while not server.started:
            if task.done():
                raise ConfigurationError(f"The emulator could not listen on {host}:{port}; see the log above.")
            await asyncio.sleep(0.005)
        bound = server.servers[0].sockets[0].getsockname()[1]
        emulator = Emulator(state, host, bound)
        logger.info("Emulator listening on %s", emulator.url)
        yield emulator
    finally:
        server.should_exit = True
        with anyio.CancelScope(shield=True):
            await task
            await state.audio.aclose()


async def run_emulator(
    config: EmulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[Emulator], None] | None = None,
) -> None:
    """Serve the emulator until cancelled; ``on_ready`` receives the running handle once it listens."""
    import anyio

    async with serve_emulator(config, host, port) as emulator:
        if on_ready is not None:
            on_ready(emulator)
        await anyio.sleep_forever()


async def _serve(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits the process when it cannot bind; we must not
        logger.debug("uvicorn gave up starting the emulator")

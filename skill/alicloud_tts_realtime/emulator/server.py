"""The emulator's I/O layer: an ASGI (Starlette) app that drives :class:`.core.EmulatorSession`.

Why ASGI rather than a bare websockets server: the non-realtime HTTP endpoint (§6) is served on the
same port, so other modules add their routes through ``build_app(state, extra_routes=...)`` and
reuse :func:`authorized` and :func:`denial_response`.

Per WebSocket connection, a reader loop feeds frames to the core and a response runner produces
the audio of each response in order, and (with ``idle_close_s``) a watcher closes an idle
connection. Every send happens under one lock *together with* the core call that produced it, so
the wire order is always the core's order. Counters (:class:`.stats.EmulatorStats`) are served as
JSON at ``GET /_emulator/stats`` with the same key as the realtime endpoint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import uuid
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import anyio.lowlevel
import uvicorn
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from .. import catalog
from .. import protocol as p
from ..errors import EngineUnavailableError, TTSError
from ..models import AudioChunk, SpeechRequest
from .config import IDLE_CLOSE_REASON, EmulatorConfig
from .core import (
    Action,
    CancelResponse,
    CloseConnection,
    ContinueResponse,
    DropConnection,
    EmulatorSession,
    Rechunker,
    StartResponse,
    bounded_append,
)
from .signal import SpeechSignal
from .stats import STATS_PATH, EmulatorStats

if TYPE_CHECKING:
    from ..engines.base import Engine

__all__ = [
    "HTTP_BASE_PATH",
    "REALTIME_PATH",
    "AudioSource",
    "EmulatorState",
    "SessionRecord",
    "authorized",
    "build_app",
    "build_server",
    "denial_response",
]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

REALTIME_PATH = "/api-ws/v1/realtime"
HTTP_BASE_PATH = "/api/v1"

# DashScope error bodies (§5) for refused upgrades, by HTTP status.
_DENIALS: dict[int, tuple[str, str]] = {
    400: ("InvalidParameter", "Required parameter(s) missing or invalid, please check the request parameters."),
    401: ("InvalidApiKey", "Invalid API-key provided."),
    403: ("AccessDenied", "Access denied."),
    404: ("ModelNotFound", "Model not exist."),
    429: ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    500: ("InternalError", "An internal error has occurred, please try again later."),
    503: ("ServiceUnavailable", "The service is unavailable, please try again later."),
    504: ("GatewayTimeout", "The gateway timed out, please try again later."),
}
# An upgrade on a path other than REALTIME_PATH. DashScope's status-code table lists InvalidURL under
# 400; what the real gateway answers on an unknown WebSocket path is unconfirmed, and 404 says it best.
_UNKNOWN_PATH = (404, "InvalidURL", "Invalid URL provided in your request.")


@dataclass
class SessionRecord:
    """What the emulator saw of one connection attempt, for tests.

    ``events`` and ``sent`` keep the most recent ``max_events_per_session`` entries only.

    Attributes:
        conn: The connection's 1-based ordinal (upgrade requests on the realtime path, in order).
        model: The ``?model=`` query value ("" when absent).
        query: All query parameters.
        workspace: The ``X-DashScope-WorkSpace`` header.
        user_agent: The ``User-Agent`` header.
        headers: Request headers, lower-cased names, without ``authorization``.
        status: 101 when the upgrade was accepted, else the HTTP status of the refusal.
        session_id: The ``sess_…`` id announced, when a session was created.
        events: Client events received, parsed, in order.
        sent: Types of the server events sent, in order.
        close_code: The close code (1006 for a drop), once closed.
        close_reason: The close reason, once closed.
        closed_by: ``client`` or ``server``, once closed.
    """

    conn: int
    model: str
    query: dict[str, str]
    workspace: str | None
    user_agent: str | None
    headers: dict[str, str]
    status: int | None = None
    session_id: str | None = None
    events: list[p.ClientEvent | p.UnknownEvent] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None
    closed_by: Literal["client", "server"] | None = None

    @property
    def open(self) -> bool:
        return self.status == 101 and self.closed_by is None


class AudioSource:
    """Produces PCM for a segment of text: the offline speech engine or the synthetic signal.

    ``auto`` tries the offline engine once and falls back to the signal for good if its extra is not
    installed or it fails before producing audio; ``speech`` never falls back.
    """

    def __init__(self, mode: Literal["auto", "speech", "signal"]) -> None:
        self.mode = mode
        self._engine: Engine | None = None
        self._unavailable = mode == "signal"

    def require_speech(self) -> None:
        """Fail now when ``speech`` was asked for and the offline engine cannot be imported.

        Raises:
            EngineUnavailableError: The offline extra is not installed.
        """
        self._get_engine()

    def _get_engine(self) -> Engine:
        if self._engine is None:
            try:
                from ..engines.offline import OfflineEngine
            except ImportError as exc:
                raise EngineUnavailableError(
                    "The emulator's speech audio needs the offline engine: pip install 'alicloud-ai-audio-tts-realtime[offline]'."
                ) from exc
            self._engine = OfflineEngine()
        return self._engine

    async def pcm(self, start: StartResponse, text: str) -> AsyncGenerator[bytes, None]:
        """Yield PCM16 LE mono at ``start.sample_rate`` for ``text``.

        Raises:
            TTSError: ``speech`` mode and the engine failed.
        """
        engine = self._engine_or_none() if text.strip() else None
        request = _speech_request(start, text) if engine is not None else None
        if engine is not None and request is not None:
            produced = False
            try:
                async with _closing(engine.stream(request)) as stream:
                    async for item in stream:
                        if isinstance(item, AudioChunk) and item.pcm:
                            if item.sample_rate != start.sample_rate:
                                raise EngineUnavailableError(
                                    f"offline audio is {item.sample_rate} Hz, not {start.sample_rate}"
                                )
                            produced = True
                            yield item.pcm
                return
            except TTSError as exc:
                if self.mode == "speech" or produced:
                    raise
                logger.warning("Offline engine failed (%s); the emulator uses its synthetic signal.", exc)
                self._unavailable = True
        signal = SpeechSignal(
            text,
            start.sample_rate,
            female=catalog.female_voice(start.voice),
            speech_rate=start.speech_rate,
            pitch_rate=start.pitch_rate,
            volume=start.volume,
        )
        for block in signal.blocks(max(1, start.sample_rate // 50)):
            yield block
            await anyio.lowlevel.checkpoint()  # the signal is pure Python: let others run

    def _engine_or_none(self) -> Engine | None:
        if self._unavailable:
            return None
        try:
            return self._get_engine()
        except EngineUnavailableError as exc:
            if self.mode == "speech":
                raise
            logger.info("Emulator audio: synthetic signal (%s)", exc)
            self._unavailable = True
            return None

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.aclose()


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[_T]) -> AsyncIterator[AsyncIterator[_T]]:
    """Close an engine's stream when done, so a cancelled response stops its synthesis."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def _speech_request(start: StartResponse, text: str) -> SpeechRequest | None:
    """The offline engine's request, or ``None`` when the text or voice does not fit one."""
    try:
        language = catalog.check_language_type(start.language_type)
        return SpeechRequest(text=text, voice=start.voice, sample_rate=start.sample_rate, language_type=language)
    except (ValidationError, TTSError):
        return None


class EmulatorState:
    """Shared state of one emulator: configuration, counters, recent connection records, audio source.

    Only the last ``config.max_session_records`` records are kept, so a long run stays small.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.sessions: deque[SessionRecord] = deque(maxlen=config.max_session_records)
        self.stats = EmulatorStats()
        self.audio = AudioSource(config.audio)

    @property
    def open_sessions(self) -> int:
        return self.stats.open_sessions


def authorized(config: EmulatorConfig, authorization: str | None) -> bool:
    """Whether an ``Authorization`` header carries an accepted key.

    The scheme is matched case-insensitively: SDKs before 2026-01 sent ``bearer`` (§2.2).
    """
    scheme, _, key = (authorization or "").strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return False
    return config.api_key is None or secrets.compare_digest(key.encode(), config.api_key.encode())


def denial_response(status: int, code: str | None = None, message: str | None = None) -> JSONResponse:
    """A DashScope error body ``{code, message, request_id}`` with an ``x-request-id`` header (§2.3, §5)."""
    default_code, default_message = _DENIALS.get(status, ("InternalError" if status >= 500 else "InvalidParameter", ""))
    request_id = str(uuid.uuid4())
    body = {"code": code or default_code, "message": message or default_message, "request_id": request_id}
    return JSONResponse(body, status_code=status, headers={"x-request-id": request_id})


def build_app(state: EmulatorState, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The ASGI app: the realtime WebSocket route plus ``extra_routes`` (e.g. the HTTP API).

    An upgrade on any other path is refused with HTTP 404 and a DashScope body, where Starlette
    would answer an empty 403 that a client could only take for a refused key.
    """

    async def realtime(websocket: WebSocket) -> None:
        await _serve_realtime(websocket, state)

    async def unknown_path(websocket: WebSocket) -> None:
        logger.info("Emulator refused an upgrade on unknown path %r", websocket.url.path)
        await websocket.send_denial_response(denial_response(*_UNKNOWN_PATH))

    async def stats(request: Request) -> JSONResponse:
        # The counters are harmless, but the same key as the service keeps one rule for the port.
        if not authorized(state.config, request.headers.get("authorization")):
            return denial_response(401)
        return JSONResponse(state.stats.as_dict(), headers={"cache-control": "no-store"})

    routes = [
        WebSocketRoute(REALTIME_PATH, realtime),
        Route(STATS_PATH, stats, methods=["GET"]),
        *extra_routes,
        WebSocketRoute("/{path:path}", unknown_path),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = state
    return app


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn would take over SIGINT; the embedding program (or asyncio.run) owns it.
        yield


class _WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O websockets protocol, which supports the denial-response extension.

    uvicorn 0.54 forgets to mark the handshake complete after a denial response and then logs
    "ASGI callable returned without completing handshake." at ERROR for every refused upgrade
    (Kludex/uvicorn PR #3138, open); set the flag as that fix does.
    """

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True


def build_server(app: Starlette, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for ``app`` that leaves logging and signals to the host program.

    The legacy ``websockets`` protocol of uvicorn emits a deprecation warning; the sans-I/O one
    supports the denial response that refuses an upgrade with HTTP 401 and a body (§2.3).
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        log_level="warning",
        log_config=None,  # leave the host's logging configuration alone
        access_log=False,
        ws=_WebSocketProtocol,
        ws_ping_interval=None,  # the real service sends no pings (§3.8: no heartbeat is documented)
        timeout_graceful_shutdown=5,
    )
    return _EmbeddedServer(config)


async def _serve_realtime(websocket: WebSocket, state: EmulatorState) -> None:
    config, stats = state.config, state.stats
    headers = websocket.headers
    stats.upgrade_requests += 1
    conn = stats.upgrade_requests
    record = SessionRecord(
        conn=conn,
        model=websocket.query_params.get("model", ""),
        query=dict(websocket.query_params),
        workspace=headers.get("x-dashscope-workspace"),
        user_agent=headers.get("user-agent"),
        headers={k: v for k, v in headers.items() if k != "authorization"},
    )
    state.sessions.append(record)
    if config.handshake_delay_ms:
        await anyio.sleep(config.handshake_delay_ms / 1000)
    # §2.3: a refused key is an HTTP answer to the upgrade, not an error event.
    rejected = next((f.reject_status for f in config.faults_for(conn) if f.reject_status is not None), None)
    if rejected is None and not authorized(config, headers.get("authorization")):
        rejected = 401
    if rejected is None and config.max_connections is not None and stats.open_sessions >= config.max_connections:
        rejected = 429  # §12: concurrent connections are capped per account; the real answer is a guess
        logger.info("Emulator refused connection %d: %d connections are open already", conn, stats.open_sessions)
    if rejected is not None:
        record.status = rejected
        stats.refused_upgrades += 1
        await websocket.send_denial_response(denial_response(rejected))
        return
    core = EmulatorSession(config, record.model, conn=conn, stats=stats)
    record.status, record.session_id, record.events = 101, core.session_id, core.events_received
    stats.opened()  # before any await, so that max_connections counts this one at once
    try:
        await websocket.accept(headers=[(b"x-request-id", str(uuid.uuid4()).encode())])
        logger.info("Emulator session %s opened (connection %d, model %r)", core.session_id, conn, record.model)
        await _Connection(websocket, core, state.audio, record).run()
    finally:
        stats.closed()
        logger.info("Emulator session %s closed (%s, code %s)", core.session_id, record.closed_by, record.close_code)


@dataclass
class _Job:
    """One response as the runner sees it: its text segments arrive through a stream."""

    start: StartResponse
    segments: MemoryObjectSendStream[str]
    texts: MemoryObjectReceiveStream[str]
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    def close(self) -> None:
        self.segments.close()
        self.texts.close()


class _Connection:
    def __init__(self, websocket: WebSocket, core: EmulatorSession, audio: AudioSource, record: SessionRecord) -> None:
        self._ws = websocket
        self._core = core
        self._audio = audio
        self._record = record
        self._config = core.config
        self._lock = anyio.Lock()
        self._jobs: dict[str, _Job] = {}
        self._queue_in, self._queue_out = anyio.create_memory_object_stream[_Job](math.inf)
        self._ending: CloseConnection | DropConnection | None = None
        self._tg: TaskGroup | None = None
        self._last_activity = anyio.current_time()  # the last client event or the end of a response

    @property
    def _task_group(self) -> TaskGroup:
        assert self._tg is not None, "only used while run() is serving"
        return self._tg

    async def run(self) -> None:
        """Serve the connection until either side ends it, then close as the core decided."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                async with self._lock:
                    await self._perform(self._core.opening())
                tg.start_soon(self._run_responses)
                if self._config.idle_close_s is not None:
                    tg.start_soon(self._watch_idle, self._config.idle_close_s)
                await self._read()
                tg.cancel_scope.cancel()
        finally:
            for job in self._jobs.values():
                job.close()
            self._queue_in.close()
            self._queue_out.close()
        await self._end()

    async def _end(self) -> None:
        ending, record = self._ending, self._record
        if isinstance(ending, CloseConnection):
            record.close_code, record.close_reason, record.closed_by = ending.code, ending.reason, "server"
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):  # the client went away first
                await self._ws.close(ending.code, ending.reason)
        elif isinstance(ending, DropConnection):
            # Returning without a close frame makes the server drop the TCP connection (1006).
            record.close_code, record.closed_by = 1006, "server"

    async def _read(self) -> None:
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                if self._record.closed_by is None:
                    self._record.close_code = message.get("code", 1005)
                    self._record.close_reason = message.get("reason") or ""
                    self._record.closed_by = "client"
                return
            self._last_activity = anyio.current_time()
            frame = message.get("text")
            frame = frame if frame is not None else message.get("bytes", b"")
            async with self._lock:
                await self._perform(self._core.receive_frame(frame))

    async def _perform(self, actions: list[Action]) -> None:
        """Carry out the core's actions in order; the caller holds the send lock."""
        for action in actions:
            if isinstance(action, BaseModel):
                await self._send(action)
            elif isinstance(action, StartResponse):
                send, receive = anyio.create_memory_object_stream[str](math.inf)
                job = self._jobs[action.response_id] = _Job(action, send, receive)
                self._push(job, action.text, action.final)
                self._queue_in.send_nowait(job)
            elif isinstance(action, ContinueResponse):
                self._push(self._jobs[action.response_id], action.text, action.final)
            elif isinstance(action, CancelResponse):
                self._jobs[action.response_id].scope.cancel()
            elif isinstance(action, CloseConnection) and action.after_ms:
                self._task_group.start_soon(self._close_later, action)
            else:
                assert isinstance(action, (CloseConnection, DropConnection))
                self._ending = action
                self._task_group.cancel_scope.cancel()
                await anyio.lowlevel.checkpoint()  # stop here: nothing after a close is sent

    @staticmethod
    def _push(job: _Job, text: str, final: bool) -> None:
        if text:
            job.segments.send_nowait(text)
        if final:
            job.segments.close()

    async def _watch_idle(self, limit: float) -> None:
        """Close 1000 "idle timeout" after ``limit`` seconds without client events or responses."""
        while True:
            now = anyio.current_time()
            if self._jobs or self._core.responding:
                self._last_activity = now  # busy: the idle time starts when the response ends
            deadline = self._last_activity + limit
            if now < deadline:
                await anyio.sleep(deadline - now)
                continue
            async with self._lock:
                await self._perform([CloseConnection(1000, IDLE_CLOSE_REASON)])

    async def _close_later(self, action: CloseConnection) -> None:
        await anyio.sleep(action.after_ms / 1000)
        async with self._lock:
            await self._perform([CloseConnection(action.code, action.reason)])

    async def _send(self, event: BaseModel) -> None:
        type_ = getattr(event, "type", "?")
        try:
            await self._ws.send_text(p.dump_event(event))
        except (WebSocketDisconnect, OSError):  # the client is gone
            if self._record.closed_by is None:
                self._record.close_code, self._record.closed_by = 1006, "client"
            self._task_group.cancel_scope.cancel()
            await anyio.lowlevel.checkpoint()
        bounded_append(self._record.sent, type_, self._config.max_events_per_session)

    async def _run_responses(self) -> None:
        async for job in self._queue_out:
            try:
                await self._run_job(job)
            finally:
                self._jobs.pop(job.start.response_id).close()
                self._last_activity = anyio.current_time()

    async def _run_job(self, job: _Job) -> None:
        start, config = job.start, self._config
        async with self._lock:
            await self._perform(self._core.begin_response(start))
        rechunker = Rechunker(start.sample_rate, config.chunk_ms)
        next_send = anyio.current_time() + config.latency_ms / 1000
        with job.scope:
            try:
                async for text in job.texts:
                    next_send = max(next_send, anyio.current_time())  # text that came late starts now
                    async with aclosing(self._audio.pcm(start, text)) as pieces:
                        async for pcm in pieces:
                            for chunk in rechunker.feed(pcm):
                                next_send = await self._deliver(start, chunk, next_send)
                    for chunk in rechunker.flush():
                        next_send = await self._deliver(start, chunk, next_send)
            except TTSError as exc:
                logger.warning("Emulator audio failed: %s", exc)
                async with self._lock:
                    await self._perform(self._core.server_failure(f"Synthesis failed: {exc}"))
        status = "cancelled" if job.scope.cancel_called else "completed"
        async with self._lock:
            await self._perform(self._core.finish_response(start, status))

    async def _deliver(self, start: StartResponse, chunk: bytes, not_before: float) -> float:
        """Send one delta no earlier than ``not_before``; return when the next one is due (§9 pacing)."""
        delay = not_before - anyio.current_time()
        if delay > 0:
            await anyio.sleep(delay)
        async with self._lock:
            injected = self._core.before_delta(start)
            if injected:
                await self._perform(injected)
            await self._send(self._core.audio_delta(start, chunk))
        return not_before + self._config.rtf * len(chunk) / 2 / start.sample_rate

"""One realtime WebSocket and its session, kept open for as many utterances as it may serve.

:class:`RealtimeConnection` owns one socket and one sans-I/O :class:`~.session.ClientSession`. A
reader task feeds every server event to the session and routes the outputs to per-utterance
channels, so that a connection outlives a call: a pool (:mod:`.pool`) hands it out again after a
clean utterance. websockets exceptions are translated to :mod:`.errors` in exactly one place,
:func:`map_websocket_errors`.

Public API (what segmented long text, incremental token streams and batches build on)::

    conn = await RealtimeConnection.open(settings, "qwen3-tts-flash-realtime")   # CREATED
    await conn.configure(p.SessionConfig(voice="Cherry", mode="commit", response_format="pcm",
                                         sample_rate=24000))                        # READY
    for text in ("First sentence.", "Second one."):        # several utterances, in order
        async with conn.speak(text) as utt:
            async for pcm in utt:                           # PCM16 bytes as they arrive
                ...
        utt.outcome                                         # SynthesisOutcome (finish reason, billing)
    conn.reusable                                           # may it go back to a pool?
    await conn.aclose()                                     # closing stops the billing

``speak()`` sends the next commit only after the previous ``response.done`` (the service may queue
or reject a commit sent during a response, §11 q6); ``pipeline=True`` sends it at once instead.
Leaving ``speak()``'s block before the utterance completed (an exception, a ``break``, a cancel)
closes the connection, which stops the upstream synthesis. An error that names one commit fails that
utterance only; any other error, a timeout or a close ends the connection and fails every pending
utterance. In ``server_commit`` mode one ``speak()`` appends the text and finishes the session (the
service segments it), so such a connection serves one utterance.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import platform
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

from . import __version__
from . import protocol as p
from .errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionFailedError,
    InvalidStateError,
    RateLimitError,
    RemoteError,
    ResponseTimeoutError,
    ServiceError,
    TTSError,
    classify_status,
    close_error,
)
from .models import SynthesisOutcome
from .quoting import quote as excerpt
from .session import (
    Audio,
    ClientSession,
    Created,
    Finished,
    Ready,
    ResponseComplete,
    SessionState,
    UtteranceFailed,
    outcome_of,
)
from .settings import REALTIME_PATH, Settings

__all__ = ["RealtimeConnection", "SpokenUtterance", "build_url", "map_websocket_errors", "status_error"]

logger = logging.getLogger(__name__)

_FINISH_WAIT_S = 1.0  # how long a graceful close waits for session.finished

_CHECK_URL = f"DASHSCOPE_REALTIME_URL: its path should end in {REALTIME_PATH}"


def build_url(base: str, model: str) -> str:
    """``<base>?model=<model>``, keeping any query the base already has (unlike the SDK, §8 #7)."""
    sep = "&" if urlsplit(base).query else "?"
    return f"{base}{sep}model={quote(model, safe='')}"


def _body_fields(body: bytes | bytearray | None) -> tuple[str | None, str | None, str | None]:
    try:
        data = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError):
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    return data.get("code"), data.get("message"), data.get("request_id")


def _host(url: str | None) -> str:
    """``host:port`` of a URL, the port defaulted by scheme; never the user info, path or query."""
    parts = urlsplit(url or "")
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"  # IPv6
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or (443 if parts.scheme in ("wss", "https") else 80)
    return f"{host}:{port}"


def _endpoint(url: str) -> str:
    """``host:port/path`` of a URL, for logs: never the user info or the query."""
    return f"{_host(url)}{urlsplit(url).path or '/'}"


def _upgrade_on(url: str | None) -> str:
    """The start of a sentence naming host, port and path of ``url``, never its query."""
    if not url:
        return "The server answered the WebSocket upgrade"
    return f"The server at {_host(url)} answered the WebSocket upgrade on path {urlsplit(url).path or '/'}"


def _status_error(
    status: int, body: bytes | bytearray | None, request_id: str | None, *, url: str | None = None
) -> RemoteError:
    """The error for a refused WebSocket upgrade.

    Args:
        status: The HTTP status of the refusal.
        body: The response body; DashScope sends ``{code, message, request_id}`` (§5).
        request_id: The ``x-request-id`` header, when the body has none.
        url: The URL that was asked for, named in messages as host, port and path only.
    """
    code, message, body_request_id = _body_fields(body)
    request_id = body_request_id or request_id
    said = f": {message.rstrip('. ')}" if message else ""
    cls, retryable = classify_status(status, code)
    if cls is AuthenticationError and (code or message):
        text = (
            f"The service refused the API key (HTTP {status}{said}); check DASHSCOPE_API_KEY, and that the key "
            "belongs to DASHSCOPE_REGION (Beijing and Singapore keys differ)."
        )
    elif cls is AuthenticationError:
        # No DashScope body: a proxy, or a server that is not the realtime endpoint, may refuse like this too.
        text = (
            f"{_upgrade_on(url)} with HTTP {status} and no DashScope error body, so the key may be wrong or "
            f"this may not be the realtime endpoint; check DASHSCOPE_API_KEY and DASHSCOPE_REGION, and {_CHECK_URL}."
        )
    elif cls is RateLimitError:
        text = f"The service is throttling requests (HTTP {status}{said}); wait and retry."
    elif status == 404:
        text = f"{_upgrade_on(url)} with HTTP 404{said}; check {_CHECK_URL}."
    else:
        text = f"The service refused the connection with HTTP {status}{said}."
    return cls(text, status=status, code=code, request_id=request_id, retryable=retryable)


def _cause(exc: BaseException) -> str:
    """A short text for a network failure: the OS's words, one line, without the exception's arguments.

    Only the operating system's own text is quoted: a library's message may quote the request,
    and the request's headers hold the key (websockets' ``InvalidHeaderValue`` does exactly that),
    so for anything else the exception's type is all that is said.
    """
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        text = f"certificate verify failed: {exc.verify_message}"
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = ""
    text = " ".join(text.split())
    if len(text) > 160:
        text = text[:159] + "…"
    name = type(exc).__name__
    return f"{text} ({name})" if text else name


@contextlib.contextmanager
def map_websocket_errors(*, url: str | None = None, got_audio: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Translate websockets and socket exceptions into this package's errors, once, here.

    Causes are dropped (``from None``) where the library's exception holds the request, whose
    headers carry the API key.

    Args:
        url: The URL being connected to; messages name its host, port and path, never its query.
        got_audio: Tells whether audio was already received, which turns a close into a
            mid-stream drop rather than a refusal.
    """
    from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

    try:
        yield
    except TTSError:
        raise  # already ours; ResponseTimeoutError is also a TimeoutError, hence an OSError
    except InvalidStatus as exc:
        response = exc.response
        request_id = response.headers.get("x-request-id")
        raise _status_error(response.status_code, response.body, request_id, url=url) from None
    except InvalidURI:
        raise ConfigurationError("The realtime URL is not a valid ws:// or wss:// URL.") from None
    except ConnectionClosed as exc:
        rcvd = exc.rcvd
        code, reason = (rcvd.code, rcvd.reason) if rcvd else (1006, "")
        raise close_error(code, reason, got_audio()) from None
    except ssl.SSLCertVerificationError as exc:
        # Not transient: the same certificate fails the same way on every attempt.
        raise ConnectionFailedError(
            f"Cannot reach the realtime service at {_host(url)}: {_cause(exc)}; "
            "check the host in DASHSCOPE_REALTIME_URL, and the system's CA certificates (SSL_CERT_FILE).",
            retryable=False,
        ) from None
    except (OSError, asyncio.IncompleteReadError, WebSocketException) as exc:
        raise ConnectionFailedError(f"Cannot reach the realtime service at {_host(url)}: {_cause(exc)}.") from None


class _RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Hands websockets a logger that masks the ``Authorization`` header it logs at DEBUG.

    websockets logs every handshake header (``"> %s: %s"``) when its logger is at DEBUG, which
    ``-vv`` enables; the key must never reach a log. An adapter keeps logging's global state as is.
    """

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if len(args) >= 2 and isinstance(args[0], str) and args[0].lower() == "authorization":
            args = (args[0], "Bearer ***", *args[2:])
        super().log(level, msg, *args, **kwargs)


def _default_connect() -> Callable[..., Any]:
    from websockets.asyncio.client import connect

    return connect


status_error = _status_error


def _user_agent() -> str:
    return f"alicloud-ai-audio-tts-realtime/{__version__}; python/{platform.python_version()}"


class _Done:
    """End of an utterance's audio: the response's status and usage."""

    __slots__ = ("status", "usage")

    def __init__(self, status: str | None, usage: p.Usage | None) -> None:
        self.status = status
        self.usage = usage


if sys.version_info >= (3, 11):

    async def _get(queue: asyncio.Queue[Any], timeout: float) -> Any:
        """``queue.get()`` within ``timeout``; a cancel is never lost.

        Python 3.11's ``asyncio.wait_for`` swallows a cancel that lands just as the item arrives
        (CPython gh-86296, fixed in 3.12), and the cancelled call then went on speaking;
        ``asyncio.timeout`` awaits in the caller's own task, so a cancel is always raised.
        """
        async with asyncio.timeout(timeout):
            return await queue.get()

else:  # Python 3.10 has no asyncio.timeout

    async def _get(queue: asyncio.Queue[Any], timeout: float) -> Any:
        return await asyncio.wait_for(queue.get(), timeout)


class SpokenUtterance:
    """One utterance on a :class:`RealtimeConnection`: an async iterator of PCM16 bytes, then :attr:`outcome`.

    Attributes:
        id: The utterance id (the commit's ``event_id``; empty in ``server_commit`` mode).
        got_audio: Whether any audio arrived.
        heard: Whether the service sent anything since the text went out (a reused socket that
            closes before this was stale, and the text was never spoken).
        reused_connection: Whether the socket was open before this utterance was asked for.
        connect_ms: Milliseconds this utterance waited for a new socket (0 when reused).
    """

    def __init__(self, conn: RealtimeConnection, reused: bool, connect_ms: int) -> None:
        self._conn = conn
        self._queue: asyncio.Queue[bytes | _Done | BaseException] = asyncio.Queue()
        self.id = ""
        self.got_audio = False
        self.heard = False
        self.done = False
        self.reused_connection = reused
        self.connect_ms = connect_ms
        self._status: str | None = None
        self._characters: int | None = None
        self._outcome: SynthesisOutcome | None = None
        self.holds_turn = False
        self.failure: BaseException | None = None
        self.audio_queued = False

    # --- fed by the connection's reader -------------------------------------------------------

    def _put(self, item: bytes | _Done | BaseException) -> None:
        self.heard = True
        self.audio_queued = self.audio_queued or isinstance(item, bytes)
        self._queue.put_nowait(item)

    def _response_done(self, status: str, usage: p.Usage | None, *, final: bool) -> None:
        if self._status in (None, "completed"):  # the first response that did not complete decides
            self._status = status
        if usage is not None and usage.characters is not None:
            self._characters = (self._characters or 0) + usage.characters
        self.heard = True
        if final:
            self._queue.put_nowait(_Done(self._status, None))

    # --- the caller's side --------------------------------------------------------------------

    def __aiter__(self) -> SpokenUtterance:
        return self

    async def __anext__(self) -> bytes:
        if self.done:
            raise StopAsyncIteration
        timeout = self._conn.settings.idle_timeout
        try:
            # A queued item needs no timer: wait_for costs a task and a timer per call.
            item = self._queue.get_nowait() if not self._queue.empty() else await _get(self._queue, timeout)
        except asyncio.TimeoutError:
            self._conn.broken = True
            raise ResponseTimeoutError(
                f"No event from the service for {timeout:g} s while the session was {self._conn.state.value}."
            ) from None
        if isinstance(item, bytes):
            self.got_audio = True
            return item
        self.done = True
        if isinstance(item, BaseException):
            if isinstance(item, ServiceError) and item.event_id == self.id and self.id:
                self.failure = item  # this commit was refused; the connection goes on
            raise item
        self._outcome = SynthesisOutcome(
            finish_reason=outcome_of(item.status, self.got_audio),
            model=self._conn.session.model or self._conn.model,
            characters=self._characters,
            session_id=self._conn.session.session_id,
            reused_connection=self.reused_connection,
            connect_ms=self.connect_ms,
        )
        raise StopAsyncIteration

    @property
    def outcome(self) -> SynthesisOutcome:
        """The outcome, once the iteration ended without an error.

        Raises:
            InvalidStateError: The utterance has not completed.
        """
        if self._outcome is None:
            raise InvalidStateError("The utterance has not completed.")
        return self._outcome


class _Speech:
    """The async context manager returned by :meth:`RealtimeConnection.speak`."""

    def __init__(self, conn: RealtimeConnection, text: str) -> None:
        self._conn = conn
        self._text = text
        self._utt: SpokenUtterance | None = None

    @property
    def utterance(self) -> SpokenUtterance | None:
        """The utterance, once the block was entered (set even when sending its text failed)."""
        return self._utt

    async def __aenter__(self) -> SpokenUtterance:
        conn = self._conn
        fresh, conn.fresh = conn.fresh, False
        utt = SpokenUtterance(conn, reused=not fresh, connect_ms=conn.connect_ms if fresh else 0)
        await conn.turn.acquire()
        utt.holds_turn = True
        self._utt = utt
        try:
            conn.check_open()
            session = conn.session
            utt.id = session.speak(self._text) or ""
            if session.server_commit:
                session.finish()
            conn.utterances[utt.id] = utt
            conn.spoken += 1
            await conn.flush()
        except BaseException:
            conn.utterances.pop(utt.id, None)
            conn.release_turn(utt)
            if conn._error is not None:
                raise conn._error from None  # the reader's account of the close is the better one
            raise
        if conn.pipeline:
            conn.release_turn(utt)
        return utt

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn, utt = self._conn, self._utt
        assert utt is not None
        conn.utterances.pop(utt.id, None)
        conn.release_turn(utt)
        if not utt.done or (exc is not None and exc is not utt.failure):
            # Left before the utterance completed (error, break, cancel): closing stops the synthesis.
            conn.broken = True
            with anyio_shield():
                await conn.aclose()


@contextlib.contextmanager
def anyio_shield() -> Iterator[None]:
    """Shield a cleanup from cancellation (anyio's scope works under asyncio and trio alike)."""
    import anyio

    with anyio.CancelScope(shield=True):
        yield


class RealtimeConnection:
    """One realtime WebSocket and its session, for several utterances in order (see the module docs).

    Use :meth:`open` to create one. Attributes:

    Attributes:
        model: The model in the URL (a socket serves one model for life).
        session: The sans-I/O session core.
        connect_ms: Milliseconds from the start of :meth:`open` to ``session.created``.
        opened_at: ``time.monotonic()`` when the socket opened (a pool bounds the age).
        spoken: Utterances started on this connection.
        pipeline: Send a commit while a response is still running (opt-in; see the module docs).
    """

    def __init__(self, ws: Any, settings: Settings, model: str, url: str, *, pipeline: bool = False) -> None:
        self._ws = ws
        self.settings = settings
        self.model = model
        self.url = url
        self.pipeline = pipeline
        self.session = ClientSession()
        self.connect_ms = 0
        self.opened_at = time.monotonic()
        self.spoken = 0
        self.fresh = True
        self.broken = False
        self.utterances: dict[str, SpokenUtterance] = {}
        self.turn = asyncio.Lock()
        self._send_lock = asyncio.Lock()
        self._closing = False
        self._error: RemoteError | None = None
        self._created: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ready: asyncio.Future[None] | None = None
        self._close_callbacks: list[Callable[[RealtimeConnection], None]] = []
        self._reader: asyncio.Task[None] | None = None

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        settings: Settings,
        model: str,
        *,
        connect: Callable[..., Any] | None = None,
        deflate: bool | None = None,
        pipeline: bool = False,
    ) -> RealtimeConnection:
        """Connect and wait for ``session.created``: the connection is CREATED, ready to :meth:`configure`.

        Args:
            settings: Key, endpoint, workspace and timeouts.
            model: The model (``?model=``).
            connect: A ``websockets.asyncio.client.connect``-compatible callable (a test seam).
            deflate: Offer permessage-deflate; default ``settings.ws_deflate`` (off: it costs CPU
                and latency for base64 audio that hardly compresses).
            pipeline: See the class attributes.

        Raises:
            TTSError: Typed failure of the handshake (refused key, throttled, unreachable, timeout).
        """
        started = time.perf_counter()
        url = build_url(settings.realtime_url, model)
        headers = {"Authorization": settings.bearer()}
        if settings.workspace:
            headers["X-DashScope-WorkSpace"] = settings.workspace
        use_deflate = settings.ws_deflate if deflate is None else deflate
        logger.debug("realtime endpoint: %s", _endpoint(url))
        with map_websocket_errors(url=url):
            try:
                ws = await (connect or _default_connect())(
                    url,
                    additional_headers=headers,
                    user_agent_header=_user_agent(),
                    open_timeout=settings.connect_timeout,
                    close_timeout=2,
                    max_size=16 * 2**20,
                    compression="deflate" if use_deflate else None,
                    logger=_RedactingLogger(logging.getLogger("websockets.client"), {}),
                )
            except asyncio.TimeoutError:
                raise ResponseTimeoutError(f"No handshake within {settings.connect_timeout:g} s.") from None
        conn = cls(ws, settings, model, url, pipeline=pipeline)
        conn._reader = asyncio.create_task(conn._read(), name="realtime reader")
        try:
            await conn._wait(conn._created, settings.connect_timeout, "session.created")
        except BaseException:
            with anyio_shield():
                await conn.aclose()
            raise
        conn.connect_ms = round((time.perf_counter() - started) * 1000)
        logger.info("realtime connection open: model=%s in %d ms", model, conn.connect_ms)
        return conn

    async def configure(self, config: p.SessionConfig) -> None:
        """Send ``session.update`` and wait for ``session.updated`` (once per connection: one voice for life).

        Raises:
            InvalidStateError: Already configured.
            TTSError: The service refused the configuration, or the connection failed.
        """
        self.check_open()
        self.session.configure(config)
        self._ready = asyncio.get_running_loop().create_future()
        await self.flush()
        await self._wait(self._ready, self.settings.idle_timeout, "session.updated")
        logger.info("realtime session configured: voice=%s rate=%s", config.voice, config.sample_rate)

    async def _wait(self, future: asyncio.Future[None], timeout: float, what: str) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            self.broken = True
            raise ResponseTimeoutError(
                f"No event from the service for {timeout:g} s while the session was {self.state.value}."
            ) from None

    # --- speaking -----------------------------------------------------------------------------

    def speak(self, text: str) -> _Speech:
        """``async with conn.speak(text) as utt``: append and commit ``text``; iterate ``utt`` for its audio."""
        return _Speech(self, text)

    @property
    def state(self) -> SessionState:
        return self.session.state

    @property
    def config(self) -> p.SessionConfig | None:
        """The configuration this connection serves, once configured."""
        return self.session.config

    @property
    def closed(self) -> bool:
        return self._closing or self._reader is None or self._reader.done()

    @property
    def reusable(self) -> bool:
        """Whether the connection may serve another utterance: open, idle, configured or not, unbroken."""
        return (
            not self.closed
            and not self.broken
            and self._error is None
            and self.state in (SessionState.CREATED, SessionState.READY)
            and not self.session.pending
            and not self.utterances
            and not self.session.server_commit
        )

    def check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self.closed:
            raise ConnectionFailedError("The realtime connection is closed.")

    def release_turn(self, utt: SpokenUtterance) -> None:
        if utt.holds_turn:
            utt.holds_turn = False
            self.turn.release()

    async def flush(self) -> None:
        """Send what the session queued, in order."""
        async with self._send_lock:
            for event in self.session.take_sends():
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("sending %s", event.type)
                with map_websocket_errors(url=self.url, got_audio=self._got_audio):
                    await self._ws.send(p.dump_event(event))

    def _got_audio(self) -> bool:
        return any(utt.got_audio or utt.audio_queued for utt in self.utterances.values())

    # --- the reader ---------------------------------------------------------------------------

    async def _read(self) -> None:
        error: RemoteError | None = None
        try:
            with map_websocket_errors(url=self.url, got_audio=self._got_audio):
                while True:
                    frame = await self._ws.recv()
                    event = p.parse_server_event(frame)
                    # Event types only, never audio or the key; quoted: an unknown type is the service's text.
                    if logger.isEnabledFor(logging.DEBUG):  # quoting every delta's type would cost 30 µs each
                        logger.debug("received %s", excerpt(event.type))
                    self._route(self.session.receive(event))
                    if self.session.state is SessionState.CLOSED:
                        break
                    if self.session.has_sends:
                        await self.flush()
        except TTSError as exc:
            if not self._closing:
                error = exc if isinstance(exc, RemoteError) else ConnectionFailedError(str(exc))
        except asyncio.CancelledError:
            pass
        finally:
            self.session.connection_lost()
            self._end(error)

    def _route(self, outputs: Any) -> None:
        for out in outputs:
            if isinstance(out, Audio):
                utt = self._utterance_for(out.utterance_id)
                if utt is not None:
                    utt._put(out.pcm)
            elif isinstance(out, ResponseComplete):
                utt = self._utterance_for(out.utterance_id)
                if utt is not None:
                    utt._response_done(out.status, out.usage, final=not self.session.server_commit)
                    if not self.session.server_commit:
                        self.release_turn(utt)
            elif isinstance(out, UtteranceFailed):
                utt = self.utterances.get(out.utterance_id)
                if utt is not None:
                    utt._put(out.error)
                    self.release_turn(utt)
            elif isinstance(out, Created):
                if not self._created.done():
                    self._created.set_result(None)
            elif isinstance(out, Ready):
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
            elif isinstance(out, Finished):
                for utt in list(self.utterances.values()):  # server_commit: the session's end ends the utterance
                    utt._put(_Done(utt._status or "completed", None))

    def _utterance_for(self, utterance_id: str) -> SpokenUtterance | None:
        if self.session.server_commit:
            return next(iter(self.utterances.values()), None)
        return self.utterances.get(utterance_id)

    def _end(self, error: RemoteError | None) -> None:
        """The socket is done: fail what still waits, tell the pool."""
        if error is None and not self._closing and self.session.state is not SessionState.CLOSED:
            error = ConnectionFailedError("The realtime connection ended unexpectedly.")
        self._error = self._error or error
        failure = self._error or ConnectionFailedError("The realtime connection was closed.")
        for future in (self._created, self._ready):
            if future is not None and not future.done():
                future.set_exception(failure)
                future.exception()  # retrieved: nobody may be waiting any more
        for utt in list(self.utterances.values()):
            if not utt.done:
                utt._queue.put_nowait(failure)
            self.release_turn(utt)
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            callback(self)

    def on_close(self, callback: Callable[[RealtimeConnection], None]) -> None:
        """Call ``callback(conn)`` once the socket is done (at once if it already is)."""
        if self._reader is not None and self._reader.done():
            callback(self)
        else:
            self._close_callbacks.append(callback)

    # --- closing ------------------------------------------------------------------------------

    async def aclose(self, *, graceful: bool = False) -> None:
        """Close the socket (this stops any synthesis in progress and its billing). Idempotent.

        Args:
            graceful: On an idle, healthy session, send ``session.finish`` and wait (briefly) for
                ``session.finished`` first, so the service ends the session in order.
        """
        if graceful and self.reusable and self.state is SessionState.READY and self._reader is not None:
            with contextlib.suppress(Exception):
                self.session.finish()
                await self.flush()
                await asyncio.wait_for(asyncio.shield(self._reader), _FINISH_WAIT_S)
        self._closing = True
        with contextlib.suppress(Exception):
            await self._ws.close()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        logger.info("realtime connection closed: %s (%s)", self.session.session_id, self.state.value)

    async def __aenter__(self) -> RealtimeConnection:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

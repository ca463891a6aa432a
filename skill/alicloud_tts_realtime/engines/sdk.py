"""The official-SDK engine: ``dashscope``'s ``QwenTtsRealtime`` bridged to asyncio.

It exists for compatibility checks (does the official SDK complete a session in this runtime?) and
as the baseline the native ``realtime`` engine is measured against; the native engine stays the
default. It needs the ``dashscope`` package, imported only when this engine synthesizes.

Strategy:

- The SDK runs websocket-client's ``run_forever`` on a thread of its own and calls our callback
  there. The callback puts each event on a bounded :class:`queue.Queue` and wakes the event loop
  with ``loop.call_soon_threadsafe``. When the consumer lags, the full queue blocks the SDK's
  thread, which stops reading the socket: backpressure, and audio is never dropped.
- ``connect()`` polls every 100 ms for up to 5 s (protocol doc §2.4, §8 #1), so it runs on a
  daemon thread. websocket-client reports a refused handshake through ``on_error`` at once; the
  SDK only logs it and lets ``connect()`` time out, so a subclass hands it to us instead, and a
  401 fails in milliseconds rather than after the SDK's 5 s.
- The sans-I/O core of the native client (:class:`~..session.ClientSession`) checks the event order
  and decodes audio. What it asks to send goes through the SDK's own methods (``update_session``,
  ``append_text``, ``commit``, ``finish``), exactly as an SDK user would call them, in ``commit``
  mode like the native engine so that the two are comparable.
- The SDK reads the key from the module global ``dashscope.api_key`` when the client is
  constructed (§8 #3). It is set under a lock, the client is constructed, and the previous value
  is restored at once: the key never stays in the global. The lock orders this engine's own
  writes; other code reading the global in that instant could still see the key, a limit of the
  SDK's design.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread

from .. import protocol as p
from ..connection import status_error
from ..errors import (
    ConfigurationError,
    ConnectionFailedError,
    EngineUnavailableError,
    NoAudioError,
    RemoteError,
    ResponseTimeoutError,
    close_error,
)
from ..models import AudioChunk, SpeechRequest
from ..session import Utterance
from ..settings import Settings
from .base import Capabilities, Engine, StreamItem
from .realtime import RealtimeEngine

__all__ = ["INSTALL_HINT", "SdkEngine", "map_sdk_error", "require_sdk", "sdk_version"]

logger = logging.getLogger(__name__)

INSTALL_HINT = "The sdk engine needs the official DashScope SDK: pip install 'dashscope>=2.0.2'."
_KEY_LOCK = threading.Lock()  # serializes our writes to the SDK's module-global key
_CLOSE_WAIT_S = 2.0  # how long the close handshake may take before giving up on the SDK's thread


def sdk_version() -> str | None:
    """The installed ``dashscope`` version, or ``None`` when the SDK is not installed."""
    try:
        return importlib.metadata.version("dashscope")
    except importlib.metadata.PackageNotFoundError:
        return None


def require_sdk() -> None:
    """Import the SDK now.

    Raises:
        EngineUnavailableError: ``dashscope`` is not installed; the message says how to install it.
    """
    _client_class()


@functools.cache
def _client_class() -> Any:
    """``QwenTtsRealtime`` with ``on_error`` handed to the bridge (built on first use)."""
    try:
        from dashscope.audio.qwen_tts_realtime import QwenTtsRealtime
        from websocket import WebSocketConnectionClosedException
    except ImportError:
        raise EngineUnavailableError(INSTALL_HINT) from None

    class _Client(QwenTtsRealtime):
        bridge: _Bridge | None = None

        def on_message(self, ws: Any, message: Any) -> None:
            if self.bridge is not None and self.bridge.socket is None:
                self.bridge.socket = ws.sock  # for _shutdown, which explains why
            super().on_message(ws, message)  # type: ignore[no-untyped-call]

        def on_error(self, ws: Any, error: Any) -> None:
            # The SDK's own on_error only logs (§8 #4), which hides a refused handshake for 5 s.
            # A closed connection is reported next through on_close, with its code and reason.
            if self.bridge is not None and not isinstance(error, WebSocketConnectionClosedException):
                self.bridge.put(("error", error))

    return _Client


class _Bridge:
    """From the SDK's threads to the event loop: a bounded queue plus a loop-side wake-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self._loop = loop
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize)
        self._wakeup = asyncio.Event()
        self.closed = threading.Event()
        self.socket: Any = None  # websocket-client's WebSocket, once a message came through it

    def put(self, item: tuple[Any, ...]) -> None:
        """Enqueue from any thread; blocks while the queue is full, gives up once closed."""
        while not self.closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                self._loop.call_soon_threadsafe(self._wakeup.set)
            return

    async def get(self, timeout: float) -> tuple[Any, ...]:
        """The next item, waiting at most ``timeout`` seconds.

        Raises:
            TimeoutError: Nothing arrived in time.
        """
        deadline = self._loop.time() + timeout
        while True:
            with contextlib.suppress(queue.Empty):
                return self._queue.get_nowait()
            self._wakeup.clear()
            with contextlib.suppress(queue.Empty):  # an item put between the two checks
                return self._queue.get_nowait()
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise TimeoutError
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:  # not the built-in TimeoutError before Python 3.11
                raise TimeoutError from None


class _Callback:
    """The SDK callback (duck-typed ``QwenTtsRealtimeCallback``); runs on the SDK's thread."""

    def __init__(self, bridge: _Bridge) -> None:
        self._bridge = bridge

    def on_open(self) -> None:
        pass  # the connect thread reports the open itself, once connect() has returned

    def on_event(self, message: Any) -> None:
        self._bridge.put(("event", message))

    def on_close(self, code: int | None, reason: Any) -> None:
        self._bridge.put(("close", code, reason))


def _close_quietly(client: Any) -> None:
    if client.ws is not None:
        with contextlib.suppress(Exception):  # best effort: the socket may be half-open or gone
            client.close()


def _connect(client: Any, bridge: _Bridge) -> None:
    """Body of the connect thread: the SDK's blocking connect, reported through the bridge."""
    try:
        client.connect()
    except Exception as exc:  # a thread boundary: report everything, raise nothing
        bridge.put(("connect_failed", exc))
        _close_quietly(client)
        return
    bridge.socket = bridge.socket or client.ws.sock
    if bridge.closed.is_set():
        _close_quietly(client)  # the consumer gave up while the SDK was still connecting
    else:
        bridge.put(("open",))


def _shutdown(client: Any, sock: Any) -> None:
    """End the session so that the SDK's thread exits, join it (the SDK never does, §8 #2), and
    close the socket.

    Not through the SDK's ``close()`` first: it closes the socket from this thread while
    websocket-client's thread waits in ``epoll`` on it, and closing a file descriptor removes it
    from the epoll set, so that thread can sleep forever (one close in five against the emulator
    with dashscope 2.0.2 and websocket-client 1.9). Sending only the close frame lets that thread
    receive the answer and finish; ``close()`` stays the fallback for a peer that does not answer.

    Args:
        client: The SDK client.
        sock: Its websocket-client ``WebSocket``, remembered at connect time: the app forgets it
            when the connection ends, and when the close was started by ``send_close`` or by the
            peer, websocket-client never closes the underlying socket.
    """
    app, thread = client.ws, getattr(client, "thread", None)
    if app is None:
        return
    sock = app.sock or sock
    if sock is not None and sock.connected and thread is not None and thread.is_alive():
        with contextlib.suppress(Exception):  # the peer may be gone already
            sock.send_close()
        thread.join(timeout=_CLOSE_WAIT_S)
    if thread is not None and thread.is_alive():
        _close_quietly(client)
        thread.join(timeout=_CLOSE_WAIT_S)
    if sock is not None:
        with contextlib.suppress(Exception):
            sock.shutdown()  # websocket-client's "close the socket now"; idempotent


def map_sdk_error(exc: BaseException, *, got_audio: bool = False, url: str | None = None) -> RemoteError:
    """Translate an exception raised or reported by the SDK (or websocket-client) into ours.

    Messages name only the exception type: the SDK's and websocket-client's texts may quote the
    handshake, and the handshake carries the key.
    """
    import websocket

    if isinstance(exc, websocket.WebSocketBadStatusException):
        headers = exc.resp_headers or {}
        return status_error(exc.status_code, exc.resp_body, headers.get("x-request-id"), url=url)
    if isinstance(exc, TimeoutError):
        return ConnectionFailedError(
            "The official SDK could not open the WebSocket within its fixed 5 s; it does not say why "
            "(refused key, DNS, firewall: protocol doc §8 #1)."
        )
    if got_audio:
        return ConnectionFailedError(f"The connection dropped mid-stream ({type(exc).__name__}).")
    if isinstance(exc, (OSError, websocket.WebSocketException)):
        return ConnectionFailedError(f"Cannot reach the realtime service through the SDK ({type(exc).__name__}).")
    return ConnectionFailedError(f"The official SDK failed ({type(exc).__name__}).", retryable=False)


def _close_error(code: int | None, reason: Any, got_audio: bool) -> RemoteError:
    """The error for the SDK's ``on_close``; a ``None`` code means websocket-client read no close frame.

    Without a close frame the SDK cannot tell a dropped connection from the service's clean close
    after ``session.created`` (its answer to an unknown model): a send racing the close tears the
    socket down before the frame is read. Before audio, the sentence names both and the error is
    retryable (a retry of an unknown model fails the same way, unbilled).
    """
    text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason or "")
    if code is None and not got_audio:
        return NoAudioError(
            "The connection closed before any audio and the official SDK read no close code: the connection "
            "dropped, or the service refused the model (check the model name and region).",
            retryable=True,
        )
    return close_error(code, text, got_audio)


def _sdk_call(client: Any, event: Any) -> Callable[[], None]:
    """The SDK method call that sends ``event``."""
    if isinstance(event, p.SessionUpdate):
        cfg = event.session
        optional = {"language_type": cfg.language_type, "instructions": cfg.instructions}
        return functools.partial(
            client.update_session,
            voice=cfg.voice,
            mode=cfg.mode,
            sample_rate=cfg.sample_rate,
            **{k: v for k, v in optional.items() if v is not None},
        )
    if isinstance(event, p.InputTextBufferAppend):
        return functools.partial(client.append_text, event.text)
    if isinstance(event, p.InputTextBufferCommit):
        return client.commit  # type: ignore[no-any-return]
    if isinstance(event, p.SessionFinish):
        return client.finish  # type: ignore[no-any-return]
    raise AssertionError(f"the client core asked to send {type(event).__name__}")  # pragma: no cover


class SdkEngine(Engine):
    """Speaks through the official SDK's ``QwenTtsRealtime``, one session per request.

    Args:
        settings: Key, realtime URL (passed as the SDK's ``url=``), workspace and timeouts.
        queue_size: Events buffered between the SDK's thread and the event loop.
        observer: Called on the event loop with ``"handshake"`` once ``connect()`` returns and
            then with each server event type; the probe uses it to time the stages.
    """

    name = "sdk"
    capabilities = Capabilities(remote=True, streaming=True, instructions=True)

    def __init__(
        self, settings: Settings, *, queue_size: int = 64, observer: Callable[[str], None] | None = None
    ) -> None:
        self._settings = settings
        self._queue_size = queue_size
        self._observe = observer or (lambda stage: None)

    def _client(self, model: str, callback: _Callback) -> Any:
        settings = self._settings
        settings.bearer()  # raises ConfigurationError without a key
        assert settings.api_key is not None
        if urlsplit(settings.realtime_url).query:
            # §8 #7: the SDK appends "?model=" to whatever URL it is given.
            raise ConfigurationError("The sdk engine needs a realtime URL without a query string.")
        cls = _client_class()
        import dashscope

        with _KEY_LOCK:
            previous = dashscope.api_key
            dashscope.api_key = settings.api_key.get_secret_value()
            try:
                return cls(model=model, callback=callback, url=settings.realtime_url, workspace=settings.workspace)
            finally:
                dashscope.api_key = previous

    async def stream(self, request: SpeechRequest) -> AsyncIterator[StreamItem]:
        assert request.model is not None, "resolve the request first (SpeechRequest.resolved())"
        bridge = _Bridge(asyncio.get_running_loop(), self._queue_size)
        await anyio.to_thread.run_sync(_client_class)  # the first import of dashscope takes ~0.5 s: not on the loop
        client = self._client(request.model, _Callback(bridge))
        client.bridge = bridge
        utterance = Utterance(RealtimeEngine.session_config(request), request.text)
        core = utterance.core
        opened = False
        waiting: list[p.ClientEvent] = []  # sends asked for before connect() returned, as an SDK user would wait

        async def send(events: list[p.ClientEvent]) -> None:
            for event in events:
                try:
                    await asyncio.to_thread(_sdk_call(client, event))
                except Exception as exc:  # the SDK raises ConnectionError, websocket errors …
                    raise map_sdk_error(exc, got_audio=utterance.got_audio, url=self._settings.realtime_url) from None

        threading.Thread(target=_connect, args=(client, bridge), name="dashscope-sdk-connect", daemon=True).start()
        logger.info("sdk session open: model=%s voice=%s rate=%s", request.model, request.voice, request.sample_rate)
        try:
            while not utterance.finished:
                try:
                    kind, *args = await bridge.get(self._settings.idle_timeout)
                except TimeoutError:
                    raise ResponseTimeoutError(
                        f"No event from the SDK for {self._settings.idle_timeout:g} s "
                        f"while the session was {core.state.value}."
                    ) from None
                if kind == "open":
                    opened = True
                    self._observe("handshake")
                    await send(waiting)
                    waiting.clear()
                elif kind == "event":
                    event = p.parse_server_event(args[0])
                    self._observe(event.type)
                    sends, audio = utterance.receive(event)
                    for pcm in audio:
                        yield AudioChunk(pcm, request.sample_rate)
                    if opened:
                        await send(sends)
                    else:
                        waiting.extend(sends)
                elif kind == "close":
                    raise _close_error(args[0], args[1], utterance.got_audio)
                else:  # "error" from on_error, "connect_failed" from the connect thread
                    raise map_sdk_error(args[0], got_audio=utterance.got_audio, url=self._settings.realtime_url)
        finally:
            bridge.closed.set()
            with anyio.CancelScope(shield=True):  # a cancelled caller still closes the socket and joins
                await anyio.to_thread.run_sync(_shutdown, client, bridge.socket)
            # The connect thread is not joined: after a refused handshake the SDK's connect() keeps
            # polling until its fixed 5 s pass, and waiting for that would undo the fast failure.
            # It ends by itself then (one thread per session, at most 5 s past it; a daemon).
            logger.info("sdk session closed: %s (%s)", core.session_id, core.state.value)
        yield utterance.outcome(request.model)

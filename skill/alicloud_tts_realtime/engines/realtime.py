"""The asyncio DashScope realtime client: a thin I/O loop around :class:`~..session.ClientSession`.

One synthesis is one WebSocket session (§3.5): connect with ``Authorization: Bearer`` → wait for
``session.created`` → ``session.update`` → ``session.updated`` → append + commit → audio deltas →
``response.done`` → ``session.finish`` → ``session.finished`` → the client closes (the real
service may not, §3.8). websockets exceptions are translated to :mod:`..errors` in exactly one
place, :func:`map_websocket_errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import platform
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from .. import __version__
from .. import protocol as p
from ..errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionFailedError,
    NoAudioError,
    RateLimitError,
    RemoteError,
    ResponseTimeoutError,
    ServiceError,
    TTSError,
)
from ..models import AudioChunk, SpeechRequest
from ..quoting import quote as excerpt
from ..session import Utterance
from ..settings import REALTIME_PATH, Settings
from .base import Capabilities, Engine, StreamItem

__all__ = ["RealtimeEngine", "build_url", "close_error", "map_websocket_errors"]

logger = logging.getLogger(__name__)

THROTTLE_CLOSE_CODE = 1011  # §3.8: "To many requests. Your requests are being throttled..."
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
    if status in (401, 403) and (code or message):
        return AuthenticationError(
            f"The service refused the API key (HTTP {status}{said}); check "
            "DASHSCOPE_API_KEY, and that the key belongs to DASHSCOPE_REGION (Beijing and Singapore keys differ).",
            status=status, code=code, request_id=request_id,
        )  # fmt: skip
    if status in (401, 403):
        # No DashScope body: a proxy, or a server that is not the realtime endpoint, may refuse like this too.
        return AuthenticationError(
            f"{_upgrade_on(url)} with HTTP {status} and no DashScope error body, so the key may be wrong or "
            f"this may not be the realtime endpoint; check DASHSCOPE_API_KEY and DASHSCOPE_REGION, and {_CHECK_URL}.",
            status=status, code=code, request_id=request_id,
        )  # fmt: skip
    if status == 404:
        return ServiceError(
            f"{_upgrade_on(url)} with HTTP 404{said}; check {_CHECK_URL}.",
            status=status, code=code, request_id=request_id, retryable=False,
        )  # fmt: skip
    if status == 429:
        return RateLimitError(
            f"The service is throttling requests (HTTP 429{said}); wait and retry.",
            status=status, code=code, request_id=request_id,
        )  # fmt: skip
    return ServiceError(
        f"The service refused the connection with HTTP {status}{said}.",
        status=status, code=code, request_id=request_id, retryable=status == 408 or status >= 500,
    )  # fmt: skip


def close_error(code: int | None, reason: str, got_audio: bool) -> RemoteError:
    """The error for a connection the service closed before ``session.finished`` (both WebSocket engines)."""
    said = f": {reason}" if reason else ""
    if code == THROTTLE_CLOSE_CODE and "many requests" in reason.lower():
        return RateLimitError(f"The service is throttling requests (close {code}{said}); wait and retry.")
    if got_audio:
        return ConnectionFailedError(f"The connection dropped mid-stream (close {code}{said}).")
    return NoAudioError(
        f"The service closed the session before any audio (close {code}{said}). "
        "This is how it answers an unknown or unavailable model: check the model name and region."
    )


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


class RealtimeEngine(Engine):
    """Speaks through the DashScope realtime WebSocket, one session per request.

    Args:
        settings: Key, endpoint, workspace and timeouts.
        connect: Seam for tests and pools: a ``websockets.asyncio.client.connect``-compatible
            callable. Defaults to the real one.
        mode: ``commit`` (default): the whole text is one response, a deterministic turn that a
            reused session can repeat. ``server_commit``: the service segments the text (§3.6).
    """

    name = "realtime"
    capabilities = Capabilities(remote=True, streaming=True, instructions=True)

    def __init__(
        self,
        settings: Settings,
        *,
        connect: Callable[..., Any] | None = None,
        mode: Literal["commit", "server_commit"] = "commit",
    ) -> None:
        self._settings = settings
        self._connect = connect
        self._mode = mode

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": self._settings.bearer()}
        if self._settings.workspace:
            headers["X-DashScope-WorkSpace"] = self._settings.workspace
        return headers

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

    async def stream(self, request: SpeechRequest) -> AsyncIterator[StreamItem]:
        assert request.model is not None, "resolve the request first (SpeechRequest.resolved())"
        settings = self._settings
        connect = self._connect or _default_connect()
        url = build_url(settings.realtime_url, request.model)
        utterance = Utterance(self.session_config(request, self._mode), request.text)

        logger.debug("realtime endpoint: %s", _endpoint(url))
        with map_websocket_errors(url=url):
            try:
                ws = await connect(
                    url,
                    additional_headers=self._headers(),
                    user_agent_header=f"alicloud-ai-audio-tts-realtime/{__version__}; python/{platform.python_version()}",
                    open_timeout=settings.connect_timeout,
                    close_timeout=2,
                    max_size=16 * 2**20,
                    logger=_RedactingLogger(logging.getLogger("websockets.client"), {}),
                )
            except asyncio.TimeoutError:
                raise ResponseTimeoutError(f"No handshake within {settings.connect_timeout:g} s.") from None
        logger.info(
            "realtime session open: model=%s voice=%s rate=%s", request.model, request.voice, request.sample_rate
        )
        try:
            with map_websocket_errors(url=url, got_audio=lambda: utterance.got_audio):
                while not utterance.finished:
                    try:
                        # wait_for rather than asyncio.timeout: Python 3.10 is supported, and
                        # cancelling recv() is safe in websockets' asyncio implementation.
                        frame = await asyncio.wait_for(ws.recv(), settings.idle_timeout)
                    except asyncio.TimeoutError:
                        raise ResponseTimeoutError(
                            f"No event from the service for {settings.idle_timeout:g} s "
                            f"while the session was {utterance.core.state.value}."
                        ) from None
                    received = p.parse_server_event(frame)
                    # Event types only, never audio or the key; quoted: an unknown type is the service's text.
                    logger.debug("received %s", excerpt(received.type))
                    sends, audio = utterance.receive(received)
                    for event in sends:
                        logger.debug("sending %s", event.type)
                        await ws.send(p.dump_event(event))
                    for pcm in audio:
                        if logger.isEnabledFor(logging.DEBUG):
                            logger.debug("audio delta: %d bytes", len(pcm))
                        yield AudioChunk(pcm, request.sample_rate)
        finally:
            # Always close ourselves: after session.finished the real service may keep the socket
            # open (§3.8), and on cancellation this is what stops the upstream synthesis.
            with contextlib.suppress(Exception):
                await ws.close()
            logger.info("realtime session closed: %s (%s)", utterance.core.session_id, utterance.core.state.value)
        yield utterance.outcome(request.model)

"""The non-realtime HTTP engine: Qwen TTS over ``multimodal-generation``, streamed as SSE.

One synthesis is one ``POST {base}/services/aigc/multimodal-generation/generation`` with
``X-DashScope-SSE: enable`` (protocol doc §6.1). Each SSE frame carries base64 PCM16 mono 24 kHz
in ``output.audio.data`` with ``finish_reason`` set to the *string* ``"null"``; the last frame has
``finish_reason: "stop"``, empty ``data`` and the URL of the whole file (§6.4). Audio is decoded and
yielded frame by frame as it arrives, so the first chunk plays before synthesis is complete.

The engine speaks the non-realtime models (``qwen3-tts-flash``, ``qwen3-tts-instruct-flash`` and
their snapshots). A request for a realtime model is mapped to its HTTP counterpart
(:func:`~..catalog.http_model_for`), which is what the fallback needs: the HTTP API refuses
realtime models (§6.5). An explicit ``model=`` given to the engine overrides the mapping.

httpx exceptions are translated in exactly one place, :func:`map_httpx_errors`.

Strategy for the SSE framing: a small line parser here rather than httpx-sse. DashScope reports the
upstream status in a ``status:`` field or a ``:HTTP_STATUS/400`` comment line (§6.4, and the 1.x
SDK's ``_handle_stream``); a spec-compliant SSE parser drops both, and the status tells a refused
key from a bad parameter. httpx-sse would also be a dependency we get only through ``mcp``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .. import __version__, catalog
from ..audio import decode_chunk
from ..connection import _endpoint, _host
from ..errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionFailedError,
    EngineUnavailableError,
    InvalidRequestError,
    InvalidStateError,
    NoAudioError,
    ProtocolViolationError,
    RateLimitError,
    RemoteError,
    ResponseTimeoutError,
    ServiceError,
    classify_status,
)
from ..models import AudioChunk, FinishReason, SpeechRequest, SynthesisOutcome
from ..quoting import quote
from ..settings import Settings
from .base import Capabilities, Engine, StreamItem

__all__ = ["GENERATION_PATH", "HttpEngine", "SseFrame", "SseParser", "map_httpx_errors"]

logger = logging.getLogger(__name__)

GENERATION_PATH = "/services/aigc/multimodal-generation/generation"
SAMPLE_RATE = 24000  # §6.4: the stream is PCM16 mono 24 kHz whatever the request says (§11 q13)
_STATUS_COMMENT = re.compile(r"HTTP_STATUS/(\d{3})")
_REALTIME_ONLY = "does not support http call"  # §6.5, the answer to a realtime model over HTTP


@dataclass
class SseFrame:
    """One server-sent event.

    Attributes:
        event: The ``event:`` field (``result``, ``error``), empty when absent.
        data: The ``data:`` lines joined with newlines.
        id: The ``id:`` field, when present.
        status: The upstream HTTP status from ``status:`` or a ``:HTTP_STATUS/NNN`` comment.
    """

    event: str = ""
    data: str = ""
    id: str | None = None
    status: int | None = None


class SseParser:
    """Incremental parser of a DashScope SSE byte stream.

    Call :meth:`feed` with each chunk of the body as it arrives and handle the frames it returns;
    call :meth:`close` at the end of the body for a last frame without a trailing blank line.
    Lines end with LF or CRLF (DashScope uses LF).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._fields: dict[str, Any] = {}
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SseFrame]:
        """Consume bytes; return the frames they complete.

        Raises:
            ProtocolViolationError: A line is not UTF-8.
        """
        self._buffer += chunk
        frames: list[SseFrame] = []
        start = 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            frame = self._line(bytes(self._buffer[start:end]).rstrip(b"\r"))
            if frame is not None:
                frames.append(frame)
            start = end + 1
        del self._buffer[:start]
        return frames

    def close(self) -> list[SseFrame]:
        """End of the body: return the pending frame, if any."""
        pending, self._buffer = bytes(self._buffer), bytearray()
        frames = [self._line(pending.rstrip(b"\r")) if pending else None, self._line(b"")]
        return [frame for frame in frames if frame is not None]

    def _line(self, raw: bytes) -> SseFrame | None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolationError("The HTTP API sent an SSE line that is not UTF-8.") from None
        if not line:
            if not self._data and not self._fields:
                return None
            frame = SseFrame(data="\n".join(self._data), **self._fields)
            self._fields, self._data = {}, []
            return frame
        if line.startswith(":"):
            if match := _STATUS_COMMENT.match(line[1:].strip()):
                self._fields["status"] = int(match.group(1))
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._fields["event"] = value.strip()
        elif name == "id":
            self._fields["id"] = value.strip()
        elif name == "status" and value.strip().isdigit():
            self._fields["status"] = int(value.strip())
        return None


@contextlib.contextmanager
def map_httpx_errors(*, url: str | None = None, got_audio: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Translate httpx exceptions into this package's errors, once, here.

    Every httpx exception carries the request, whose headers hold the API key, so causes are
    dropped (``from None``) and only the exception type is named.

    Args:
        url: The endpoint, whose ``host:port`` (never its path or query) the messages name.
        got_audio: Tells whether audio was already received, which turns a network failure into
            a mid-stream drop.
    """
    httpx = _import_httpx()
    where = f" at {_host(url)}" if url else ""
    try:
        yield
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise ConnectionFailedError(f"Cannot reach the HTTP API{where} ({type(exc).__name__}).") from None
    except httpx.TimeoutException as exc:
        raise ResponseTimeoutError(f"The HTTP API went silent ({type(exc).__name__}).") from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        raise ConfigurationError(
            "The HTTP API base URL is not a valid http(s) URL; check DASHSCOPE_HTTP_BASE_URL."
        ) from None
    except httpx.HTTPError as exc:  # transport errors, a body cut short, undecodable content
        if got_audio():
            raise ConnectionFailedError(f"The HTTP stream dropped mid-audio ({type(exc).__name__}).") from None
        raise ConnectionFailedError(f"Cannot reach the HTTP API{where} ({type(exc).__name__}).") from None


async def _frames(response: Any) -> AsyncGenerator[SseFrame, None]:
    """The SSE frames of an ``httpx.Response`` body, each as soon as its blank line arrives."""
    parser = SseParser()
    async for chunk in response.aiter_bytes():
        for frame in parser.feed(chunk):
            yield frame
    for frame in parser.close():
        yield frame


def _json(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None


def _import_httpx() -> Any:
    """``httpx``, a declared dependency; its absence (a copied skill folder) gets a clear error."""
    try:
        import httpx
    except ImportError:
        raise EngineUnavailableError("The http engine needs httpx, which is not installed: pip install httpx") from None
    return httpx


def _error(status: int | None, body: Any, request_id: str | None) -> RemoteError:
    """The error for an error body (``{"code", "message", "request_id"}``, §5) or an error frame."""
    fields = body if isinstance(body, dict) else {}
    code: str | None = fields["code"] if isinstance(fields.get("code"), str) else None
    message: str = fields["message"] if isinstance(fields.get("message"), str) else ""
    request_id = fields.get("request_id") or request_id
    said = f": {message.rstrip('. ')}" if message else ""
    where = f"HTTP {status}{said}" if status else (message or code or "error frame")
    cls, retryable = classify_status(status or 0, code)
    if status is None and cls is ServiceError:
        retryable = False  # an error frame without a status: a refusal of the request itself
    if cls is AuthenticationError:
        text = (
            f"The HTTP API refused the API key ({where}); check DASHSCOPE_API_KEY, and that the key "
            "belongs to DASHSCOPE_REGION (Beijing and Singapore keys differ)."
        )
    elif cls is RateLimitError:
        text = f"The HTTP API is throttling requests ({where}); wait and retry."
    else:
        hint = ""
        if _REALTIME_ONLY in message:
            hint = f" Realtime models are WebSocket-only; over HTTP use {catalog.DEFAULT_HTTP_MODEL!r}."
        text = f"The HTTP API rejected the request ({where}).{hint}"
    return cls(text, status=status, code=code, request_id=request_id, retryable=retryable)


class HttpEngine(Engine):
    """Speaks through the non-realtime HTTP API with SSE streaming, one request per synthesis.

    Args:
        settings: Key, HTTP base URL (``DASHSCOPE_HTTP_BASE_URL``), workspace and timeouts.
        model: The HTTP model to use for every request; default: the counterpart of the request's
            realtime model (``qwen3-tts-flash`` or ``qwen3-tts-instruct-flash``).
        transport: Seam for tests: an ``httpx.AsyncBaseTransport``. Defaults to the network.
    """

    name = "http"
    capabilities = Capabilities(remote=True, streaming=True, instructions=True)

    def __init__(self, settings: Settings, *, model: str | None = None, transport: Any = None) -> None:
        if model is not None:
            catalog.http_model_info(model)  # refuse an unknown model now, before any call
        self._settings = settings
        self._model = model
        self._transport = transport
        self._client: Any = None
        self._closed = False

    @property
    def url(self) -> str:
        """The endpoint this engine posts to."""
        return self._settings.http_base_url + GENERATION_PATH

    def model_for(self, request: SpeechRequest) -> catalog.ModelInfo:
        """The HTTP model that will speak ``request``, with the request checked against it.

        Raises:
            InvalidRequestError: No HTTP counterpart, a voice the model lacks, an instruction it
                does not take, or a sample rate other than 24000.
        """
        info = catalog.http_model_for(self._model or request.model, request.instruction)
        catalog.check_voice(info, request.voice)
        if request.instruction and not info.takes_instruction:
            raise InvalidRequestError(
                f"HTTP model {quote(info.id)} does not accept an instruction; use {catalog.DEFAULT_HTTP_INSTRUCT_MODEL!r}.",
                field="instruction",
            )
        if request.sample_rate not in info.sample_rates:
            raise InvalidRequestError(
                f"The HTTP API streams {SAMPLE_RATE} Hz audio only; use sample_rate {SAMPLE_RATE} with the "
                f"http engine, not {request.sample_rate}.",
                field="sample_rate",
            )
        return info

    def body(self, request: SpeechRequest) -> dict[str, Any]:
        """The JSON body for ``request`` (§6.2): ``input`` holds text, voice and language."""
        info = self.model_for(request)
        text_input: dict[str, Any] = {"text": request.text, "voice": request.voice}
        if request.language_type:
            text_input["language_type"] = request.language_type
        parameters: dict[str, Any] = {}
        if request.instruction:
            parameters["instructions"] = request.instruction
        return {"model": info.id, "input": text_input, "parameters": parameters}

    def _headers(self) -> dict[str, str]:
        headers = {
            "Authorization": self._settings.bearer(),
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "text/event-stream",
            "X-DashScope-SSE": "enable",  # §6.1: streaming is chosen by this header, not the body
            "User-Agent": f"alicloud-ai-audio-tts-realtime/{__version__}; python/{platform.python_version()}",
        }
        if self._settings.workspace:
            headers["X-DashScope-WorkSpace"] = self._settings.workspace
        return headers

    def _http(self) -> Any:
        if self._closed:
            raise InvalidStateError("The http engine is closed.")
        if self._client is None:
            httpx = _import_httpx()
            s = self._settings
            self._client = httpx.AsyncClient(
                transport=self._transport,
                timeout=httpx.Timeout(s.idle_timeout, connect=s.connect_timeout, pool=s.connect_timeout),
                follow_redirects=False,
            )
        return self._client

    async def stream(self, request: SpeechRequest) -> AsyncIterator[StreamItem]:
        body = self.body(request)  # every local check happens before anything is sent
        headers = self._headers()
        client = self._http()
        got_audio = False
        finish: FinishReason | None = None
        characters: int | None = None
        request_id: str | None = None
        logger.info("http synthesis start: model=%s voice=%s", body["model"], request.voice)
        logger.debug("http endpoint: %s", _endpoint(self.url))
        with map_httpx_errors(url=self.url, got_audio=lambda: got_audio):
            async with client.stream("POST", self.url, json=body, headers=headers) as response:
                request_id = response.headers.get("x-request-id")
                if response.status_code != 200:
                    raise _error(response.status_code, _json(await response.aread()), request_id)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("text/event-stream"):
                    data = _json(await response.aread())
                    if isinstance(data, dict) and data.get("code"):
                        raise _error(None, data, request_id)
                    raise ProtocolViolationError(
                        f"Expected an SSE stream from the HTTP API, got {quote(content_type)}."
                    )
                async with contextlib.aclosing(_frames(response)) as frames:
                    async for frame in frames:
                        payload = _json(frame.data)
                        if not isinstance(payload, dict):
                            raise ProtocolViolationError("The HTTP API sent an SSE frame whose data is not JSON.")
                        request_id = payload.get("request_id") or request_id
                        status = frame.status if frame.status is not None and frame.status >= 400 else None
                        if frame.event == "error" or status is not None or payload.get("code"):
                            raise _error(status, payload, request_id)  # §6.4: errors arrive as frames too
                        output = payload.get("output") or {}
                        audio = output.get("audio") or {}
                        if audio.get("data"):
                            got_audio = True
                            pcm = decode_chunk(audio["data"])
                            if logger.isEnabledFor(logging.DEBUG):
                                logger.debug("http audio frame %s: %d bytes", frame.id, len(pcm))
                            yield AudioChunk(pcm, SAMPLE_RATE)
                        usage = payload.get("usage") or {}
                        if isinstance(usage.get("characters"), int):
                            characters = usage["characters"]
                        reason = output.get("finish_reason")
                        if reason not in (None, "null"):
                            # §6.4: "stop" ends a complete synthesis; anything else ends it early.
                            finish = "stop" if reason == "stop" else "incomplete"
                            break
        logger.info("http synthesis end: %s (request %s)", finish or "no final frame", request_id)
        if not got_audio:
            raise NoAudioError(
                "The HTTP API answered without audio; check the text and the voice.", request_id=request_id
            )
        if finish is None:
            raise ConnectionFailedError(
                "The HTTP stream ended before its final frame; the audio is incomplete.", request_id=request_id
            )
        yield SynthesisOutcome(finish_reason=finish, model=body["model"], characters=characters, session_id=request_id)

    async def aclose(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

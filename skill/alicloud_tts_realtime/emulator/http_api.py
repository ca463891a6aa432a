"""The emulator's non-realtime HTTP API: ``POST /api/v1/services/aigc/multimodal-generation/generation``.

Served on the same port as the realtime WebSocket (``serve_emulator`` adds these routes), with the
same key, audio source and chunking as the WebSocket side. Shapes follow protocol doc §6 and the
HTTP part of the §9 checklist:

- ``X-DashScope-SSE: enable`` streams ``text/event-stream`` frames ``id:n`` / ``event:result`` /
  ``:HTTP_STATUS/200`` / ``data:{…}``; intermediate frames carry base64 PCM16 24 kHz mono with
  ``finish_reason: "null"`` (the string); the last has ``finish_reason: "stop"``, empty ``data``
  and the ``url`` of the whole WAV (§6.4).
- Without the header: one JSON body with ``audio.url`` (§6.3), a WAV this emulator serves itself
  under :data:`FILES_PATH` (24 kHz mono s16) for a while, as OSS keeps the real one for 24 h.
- Errors: 401 ``InvalidApiKey``; 400 ``InvalidParameter`` with "current user api does not support
  http call" for a realtime model (§6.5), "Model not exist." for an unknown model (§5; the status
  is uncertain, §11 q15), and "Invalid voice specified" for a voice the model lacks (§4.2).

Emulator choice: request-level errors (key, body, model) are HTTP errors before any stream; errors
about the content (voice, text, language) are an ``event:error`` frame on a 200 stream when SSE
was asked for, as a business failure arrives in the real stream (§6.4), and HTTP 400 otherwise.
Instructions are accepted in ``parameters`` or ``input`` and are ignored by the audio.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from .. import catalog
from ..audio import encode_chunk, wav_bytes
from ..engines.http_sse import GENERATION_PATH
from ..errors import InvalidRequestError, TTSError
from .core import Rechunker, StartResponse, billed_characters
from .server import HTTP_BASE_PATH, EmulatorState, authorized, denial_response

__all__ = ["FILES_PATH", "SAMPLE_RATE", "http_routes"]

FILES_PATH = "/emulator-files"
SAMPLE_RATE = 24000  # §6.4: the HTTP API answers in 24 kHz whatever was asked (§11 q13)
URL_LIFETIME_S = 86400  # §6.3: the real URL is valid for 24 h
_KEPT_FILES = 32  # the emulator keeps only the most recent files, to bound its memory
_REALTIME_REFUSAL = "current user api does not support http call"  # §6.5, verbatim


class _Refusal(Exception):
    """A request the service refuses: HTTP ``status``, DashScope ``code`` and ``message``."""

    def __init__(self, status: int, message: str, code: str = "InvalidParameter") -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _check_request(body: Any) -> tuple[str, str, str, str | None]:
    """Validate a request body as the service would; return model, text, voice, language_type.

    Raises:
        _Refusal: With ``status`` 400 for every problem; the first element tells which kind.
    """
    if not isinstance(body, dict):
        raise _Refusal(400, "Request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _Refusal(400, "Required parameter(s) missing or invalid: model.")
    if model in catalog.MODELS:
        raise _Refusal(400, _REALTIME_REFUSAL)
    if model not in catalog.HTTP_MODELS:
        raise _Refusal(400, "Model not exist.")
    text_input = body.get("input")
    if not isinstance(text_input, dict):
        raise _Refusal(400, "Required parameter(s) missing or invalid: input.")
    text, voice, language = text_input.get("text"), text_input.get("voice"), text_input.get("language_type")
    return model, text if isinstance(text, str) else "", voice if isinstance(voice, str) else "", language


def _check_content(model: str, text: str, voice: str, language: Any) -> str | None:
    """Validate what is to be spoken; return the normalized language_type.

    Raises:
        _Refusal: Empty text, a voice the model lacks (case-sensitive, §4.2), an unknown language.
    """
    if not text.strip():
        raise _Refusal(400, "Required parameter(s) missing or invalid: input.text must not be empty.")
    if voice not in catalog.HTTP_MODELS[model].voices:
        raise _Refusal(400, "Invalid voice specified")
    if language is None:
        return None
    try:
        return catalog.check_language_type(str(language))
    except InvalidRequestError:
        raise _Refusal(400, f"Invalid language_type: {language!r}.") from None


def _sse(frame_id: int, payload: dict[str, Any], *, event: str = "result", status: int = 200) -> bytes:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"id:{frame_id}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:{data}\n\n".encode()


class _Files:
    """The WAVs behind ``audio.url``, most recent :data:`_KEPT_FILES` only."""

    def __init__(self) -> None:
        self._files: OrderedDict[str, bytes] = OrderedDict()

    def add(self, audio_id: str, wav: bytes) -> None:
        self._files[audio_id] = wav
        while len(self._files) > _KEPT_FILES:
            self._files.popitem(last=False)

    def get(self, audio_id: str) -> bytes | None:
        return self._files.get(audio_id)


def http_routes(state: EmulatorState) -> list[BaseRoute]:
    """The HTTP API routes of an emulator, sharing its configuration and audio source."""
    config = state.config
    files = _Files()

    async def pcm_chunks(model: str, text: str, voice: str, language: str | None) -> AsyncGenerator[bytes, None]:
        """Paced chunks of ``chunk_ms``: ``latency_ms`` before the first, then ``rtf`` pacing."""
        start = StartResponse(
            response_id="", item_id="", text=text, voice=voice, sample_rate=SAMPLE_RATE, model=model,
            language_type=language,
        )  # fmt: skip
        rechunker = Rechunker(SAMPLE_RATE, config.chunk_ms)
        due = anyio.current_time() + config.latency_ms / 1000

        async def paced(chunk: bytes) -> bytes:
            nonlocal due
            delay = due - anyio.current_time()
            if delay > 0:
                await anyio.sleep(delay)
            due = max(due, anyio.current_time()) + config.rtf * len(chunk) / 2 / SAMPLE_RATE
            return chunk

        async with aclosing(state.audio.pcm(start, text)) as pieces:
            async for pcm in pieces:
                for chunk in rechunker.feed(pcm):
                    yield await paced(chunk)
        for chunk in rechunker.flush():
            yield await paced(chunk)

    async def generation(request: Request) -> Response:
        if not authorized(config, request.headers.get("authorization")):
            return denial_response(401)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return denial_response(400, "InvalidParameter", "Request body is not valid JSON.")
        streaming = request.headers.get("x-dashscope-sse", "").lower() == "enable"
        request_id = str(uuid.uuid4())
        try:
            model, text, voice, language = _check_request(body)
        except _Refusal as refusal:
            return denial_response(refusal.status, refusal.code, refusal.message)
        characters = billed_characters(text)
        audio_id = f"audio_{request_id}"
        expires_at = int(time.time()) + URL_LIFETIME_S
        url = f"{str(request.base_url).rstrip('/')}{FILES_PATH}/{audio_id}.wav?Expires={expires_at}"
        final = {"data": "", "url": url, "id": audio_id, "expires_at": expires_at}
        headers = {"x-request-id": request_id}

        def payload(finish_reason: str, audio: dict[str, Any]) -> dict[str, Any]:
            return {
                "output": {"finish_reason": finish_reason, "audio": audio},
                "usage": {"characters": characters},
                "request_id": request_id,
            }

        if not streaming:
            try:
                language = _check_content(model, text, voice, language)
                pcm = [chunk async for chunk in pcm_chunks(model, text, voice, language)]
            except _Refusal as refusal:
                return denial_response(refusal.status, refusal.code, refusal.message)
            except TTSError as exc:
                return denial_response(500, "InternalError", f"Synthesis failed: {exc}")
            files.add(audio_id, wav_bytes(pcm, SAMPLE_RATE))
            return JSONResponse(payload("stop", final), headers=headers)

        async def frames() -> AsyncIterator[bytes]:
            frame_id = 0
            pcm: list[bytes] = []
            try:
                checked = _check_content(model, text, voice, language)
                async with aclosing(pcm_chunks(model, text, voice, checked)) as chunks:
                    async for chunk in chunks:
                        pcm.append(chunk)
                        frame_id += 1
                        audio = {"data": encode_chunk(chunk), "id": audio_id, "expires_at": expires_at}
                        yield _sse(frame_id, payload("null", audio))
            except _Refusal as refusal:
                error = {"code": refusal.code, "message": refusal.message, "request_id": request_id}
                yield _sse(frame_id + 1, error, event="error", status=refusal.status)
                return
            except TTSError as exc:
                error = {"code": "InternalError", "message": f"Synthesis failed: {exc}", "request_id": request_id}
                yield _sse(frame_id + 1, error, event="error", status=500)
                return
            files.add(audio_id, wav_bytes(pcm, SAMPLE_RATE))
            yield _sse(frame_id + 1, payload("stop", final))

        return StreamingResponse(frames(), media_type="text/event-stream", headers=headers)

    async def audio_file(request: Request) -> Response:
        name: str = request.path_params["name"]
        wav = files.get(name.removesuffix(".wav"))
        if wav is None:
            return Response("NoSuchKey", status_code=404, media_type="text/plain")
        return Response(wav, media_type="audio/wav")

    return [
        Route(HTTP_BASE_PATH + GENERATION_PATH, generation, methods=["POST"]),
        Route(FILES_PATH + "/{name}", audio_file, methods=["GET"]),
    ]

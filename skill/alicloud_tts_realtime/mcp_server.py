"""The MCP server: agents call ``tts_realtime`` to speak and ``tts_voices`` to choose a voice.

:func:`build_server` returns a fresh :class:`~mcp.server.mcpserver.MCPServer` for a
:class:`~.settings.Settings` and a :class:`ServerOptions`; nothing exists at import time, and the
package's ``__init__`` does not import this module, so the MCP SDK loads only when a server is
wanted. :func:`serve` is what ``alicloud-tts-realtime serve`` runs: stdio by default, or
Streamable HTTP at ``/mcp`` (stateless) with ``/healthz`` and an optional bearer token (the
transport is in :mod:`.mcp_http`).

This module holds the tools' definitions (argument schemas, descriptions, annotations), the
progress reporting and the call itself (limits, deadline, queue, engine, saving, playback, error
mapping); the structured results and the sentences that go with them are in :mod:`.mcp_results`.

Tools (names defined once, in :class:`ToolName`):

``tts_realtime``
    The normalized interface (``text``, ``voice``, ``instruction``, ``sample_rate``, plus
    ``model``, ``language_type``), ``text_format`` (``markdown``, the default, is made speakable
    by :mod:`.speakable` before anything is checked or sent; ``plain`` is spoken as written) and
    the MCP delivery options ``output``, ``filename``, ``play`` and ``stream_chunks``. The structured result is a
    :class:`~.mcp_results.SpeechResult`; the text content is a one-line summary, never a second
    copy of the audio.
``tts.realtime``
    The same tool under the seed's dotted name. Callable, but left out of ``tools/list`` unless
    :attr:`ServerOptions.list_dotted_alias` is set, because several clients reject a tool list
    that contains a dot.
``tts_voices``
    Models, their voices and languages, and which take ``instruction``.

Strategy for audio: a second of 24 kHz PCM is ~64k base64 characters and clients cap tool
results (Claude Code at ~25k tokens), so the default ``output`` is ``file``: the WAV goes under the
output directory (or, when that is not writable, the user data directory; see
:func:`~.output.writable_audio_dir`) and the result carries its absolute path and a
``resource_link``. When the client sends a progress token, each chunk is reported as it arrives
(progress = milliseconds of audio so far); with ``stream_chunks`` the notification's ``_meta``
also carries the chunk's PCM under :data:`AUDIO_META_KEY`.

Expected failures become one-sentence ``isError`` results that say what to do; unexpected ones
are logged to stderr with their traceback and reach the client only as a generic sentence.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import enum
import functools
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import (
    CallToolResult,
    ProgressNotification,
    ProgressNotificationParams,
    TextContent,
    ToolAnnotations,
)
from pydantic import Field, ValidationError

from . import __version__, catalog
from .audio import encode_chunk
from .engines import ENGINE_CHOICES, Engine, select_engine
from .engines.realtime import RealtimeEngine
from .errors import ConfigurationError, InvalidRequestError, InvalidStateError, TTSError
from .formats import FORMAT_NAMES, resolve_format
from .mcp_http import (
    AUTH_TOKEN_ENV,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT_S,
    add_health_route,
    build_http_app,
    read_token_file,
    serve_http,
)
from .mcp_results import (
    ModelVoices,
    SpeechResult,
    StoppedPlayback,
    StopResult,
    VoicesResult,
    argument_error,
    error_result,
    error_sentence,
    speech_content,
    stop_text,
    voices_text,
)
from .mcp_stdio import run_stdio
from .models import MAX_TEXT_CHARS, AudioChunk, SpeechRequest, SpeechResponse, build_request
from .output import confined_path, writable_audio_dir
from .quoting import quote
from .service import OutputMode, RetryOptions, synthesize
from .settings import Settings, load_settings
from .sinks import AudioSink
from .speakable import speakable_text
from .speaker import Speaker, Turn

__all__ = [
    "AUDIO_META_KEY",
    "ServerOptions",
    "ToolName",
    "build_server",
    "serve",
]

logger = logging.getLogger(__name__)

SERVER_NAME = "alicloud-tts-realtime"
AUDIO_META_KEY = "alicloud-tts-realtime/audio"  # the progress notification's _meta key for a chunk


class ToolName(str, enum.Enum):
    """Every tool name the server answers to, defined once."""

    TTS_REALTIME = "tts_realtime"
    TTS_REALTIME_DOTTED = "tts.realtime"
    TTS_VOICES = "tts_voices"
    TTS_STOP = "tts_stop"


@dataclass(frozen=True)
class ServerOptions:
    """How the server behaves, beyond the settings shared with the CLI.

    Attributes:
        engine: Engine choice passed to :func:`~.engines.select_engine`; ``auto`` is realtime
            with a key and offline without.
        list_dotted_alias: Also list ``tts.realtime`` in ``tools/list`` (it is callable anyway).
        max_text_chars: Longest ``text`` accepted by one call (``--max-text-chars``, default 20,000;
            long text is spoken sentence by sentence).
        deadline_seconds: Per-call total limit for short texts, queueing included; the upstream
            session is closed when it passes. A long text gets ``seconds_per_char`` per character
            instead when that is more, so it is never cut off for being long.
        seconds_per_char: The total limit's share per character of text (0.1 s).
        stall_seconds: A call that receives no audio for this long fails, named as a stall.
        max_concurrent: Syntheses running at once; further calls wait in a queue.
        auth_token: Bearer token required over HTTP; never shown in ``repr``.
        data_dir: Fallback directory for audio when the output directory is not writable;
            default :func:`~.output.user_data_dir`.
        retry: Retry policy before the first audio.
        allowed_hosts: Over HTTP, the ``Host`` values accepted on ``/mcp`` (``name`` or
            ``name:port``); empty: loopback names on a loopback address, no check elsewhere.
        allowed_origins: Over HTTP, the ``Origin`` values accepted on ``/mcp`` (a browser's page);
            requests without ``Origin`` (not from a browser) are not affected.
        request_timeout: Over HTTP, seconds a connection has to send a whole request.
        max_connections: Over HTTP, open connections at most; more are refused with 503.
    """

    engine: str = "auto"
    list_dotted_alias: bool = False
    max_text_chars: int = 20_000
    deadline_seconds: float = 120.0
    seconds_per_char: float = 0.1
    stall_seconds: float = 30.0
    max_concurrent: int = 4
    auth_token: str | None = field(default=None, repr=False)
    data_dir: Path | None = None
    retry: RetryOptions = field(default_factory=RetryOptions)
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if self.engine not in ENGINE_CHOICES:
            raise ConfigurationError(f"Unknown engine {quote(self.engine)}; use one of: {', '.join(ENGINE_CHOICES)}.")
        if not 1 <= self.max_text_chars <= MAX_TEXT_CHARS:
            raise ConfigurationError(
                f"max_text_chars must be between 1 and {MAX_TEXT_CHARS}, not {self.max_text_chars}."
            )
        if not self.deadline_seconds > 0:
            raise ConfigurationError(f"deadline_seconds must be positive, not {self.deadline_seconds}.")
        if not self.stall_seconds > 0 or self.seconds_per_char < 0:
            raise ConfigurationError(
                f"stall_seconds must be positive and seconds_per_char not negative, not {self.stall_seconds} "
                f"and {self.seconds_per_char}."
            )
        if self.max_concurrent < 1:
            raise ConfigurationError(f"max_concurrent must be at least 1, not {self.max_concurrent}.")
        if self.auth_token is not None and not self.auth_token.strip():
            raise ConfigurationError("The auth token must not be empty; unset it or give a real token.")
        if not self.request_timeout > 0:
            raise ConfigurationError(f"request_timeout must be positive, not {self.request_timeout}.")
        if self.max_connections < 1:
            raise ConfigurationError(f"max_connections must be at least 1, not {self.max_connections}.")
        for value in (*self.allowed_hosts, *self.allowed_origins):
            if not value.strip() or any(char.isspace() or not char.isprintable() for char in value):
                raise ConfigurationError(f"An allowed host or origin must be one word, not {quote(value)}.")

    def total_limit(self, text: str) -> float:
        """The whole call's limit for ``text``: the larger of ``deadline_seconds`` and its per-character share."""
        return max(self.deadline_seconds, self.seconds_per_char * len(text))


# ---------------------------------------------------------------------------------------------
# Schemas: the request fields reuse SpeechRequest's descriptions, written for a model to read.


def _doc(name: str, extra: str = "") -> str:
    description = SpeechRequest.model_fields[name].description or ""
    return f"{description} {extra}".strip()


_STABLE_MODELS = ", ".join(repr(m.id) for m in catalog.MODELS.values() if m.stable)

TextArg = Annotated[str, Field(description=_doc("text"), min_length=1)]
VoiceArg = Annotated[
    str, Field(description=_doc("voice", "Call tts_voices for every voice of every model."), min_length=1)
]
InstructionArg = Annotated[str | None, Field(description=_doc("instruction"))]
SampleRateArg = Annotated[
    int,
    # An enum in the schema, but validated by SpeechRequest so a wrong rate gets a clear sentence
    # and a rate sent as the string "16000" (some clients do) still works.
    Field(description=_doc("sample_rate"), json_schema_extra={"enum": list(catalog.SAMPLE_RATES)}),
]
ModelArg = Annotated[str | None, Field(description=_doc("model", f"Stable models: {_STABLE_MODELS}."))]
LanguageArg = Annotated[str | None, Field(description=_doc("language_type"))]
OutputArg = Annotated[
    Literal["file", "chunks", "both"],
    Field(
        description=(
            "How to return the audio. 'file' (default): save a WAV under the server's output directory "
            "and return its absolute path, with no chunks (keeps the result small). 'chunks': return "
            "base64 PCM16 LE mono chunks (about 64k characters per second at 24 kHz; for programmatic "
            "clients). 'both': save the file and return the chunks."
        )
    ),
]
FilenameArg = Annotated[
    str | None,
    Field(
        description=(
            "Optional file name inside the server's output directory, e.g. 'greeting.wav' or "
            "'intro/part1.mp3'; the format's extension is added when missing. Absolute paths, '..' and "
            "names that resolve outside the directory are refused. An existing file of that name is "
            "replaced. Default: a fresh unique name."
        )
    ),
]
FormatArg = Annotated[
    Literal[FORMAT_NAMES] | None,  # type: ignore[valid-type]
    Field(
        description=(
            "Format of the saved file: 'wav' (default), 'mp3', 'ogg' (Opus in Ogg, small, for chat apps), "
            "'flac' (lossless) or 'pcm' (raw s16le, no header). Default: the one filename's extension "
            "names, else wav. Applies to output 'file' and 'both'; chunks are always PCM."
        )
    ),
]
PlayArg = Annotated[
    bool,
    Field(
        description=(
            "Also play the audio aloud on the machine that runs this server, from its first chunk (paplay, "
            "pw-cat, aplay, ffplay or SoX play; else sounddevice; else a file player such as afplay). Calls "
            "with play are heard one after another in call order, never overlapping; at most 20 wait. The "
            "result returns once the audio is saved, not when playback ends, and says playback 'playing', "
            "'queued' or 'unavailable' (why in playback_detail). tts_stop silences it."
        )
    ),
]
InterruptArg = Annotated[
    bool,
    Field(description=("With play (implied): stop what is playing, drop the queued playbacks, and play this one now.")),
]
StreamChunksArg = Annotated[
    bool,
    Field(
        description=(
            "When the request carries a progress token, put each chunk's base64 PCM in the progress "
            f"notification's _meta under {AUDIO_META_KEY!r}, so a client can play while synthesis runs."
        )
    ),
]
TextFormatArg = Annotated[
    Literal["markdown", "plain"],
    Field(
        description=(
            "'markdown' (default): read the text as a person would read it aloud: headings, emphasis, list "
            "markers and table pipes are dropped, links keep their words, bare URLs become their host name, "
            "code blocks become 'Code block omitted.', HTML tags and emoji go. 'plain': speak it as written."
        )
    ),
]
VoicesModelArg = Annotated[
    str | None, Field(description=f"Only this model (default: all). Stable models: {_STABLE_MODELS}.")
]


# ---------------------------------------------------------------------------------------------
# Progress


class _Progress(AudioSink):
    """The MCP progress sink: reports each chunk to the client, in milliseconds of audio so far.

    Live: what it sends cannot be taken back, so the service does not retry once it got audio.
    With ``stream_chunks`` and a progress token, the notification is built here so that its
    ``_meta`` can carry the chunk; otherwise it goes through the SDK's ``report_progress``, which
    is a no-op when the client asked for no progress.
    """

    live = True

    def __init__(self, ctx: Context, *, stream_chunks: bool, sample_rate: int, queued: _Queueing) -> None:
        self._ctx = ctx
        self._sample_rate = sample_rate
        self._queued = queued
        request = ctx.request_context
        meta: Mapping[str, Any] = request.meta or {}
        self._token = meta.get("progress_token", meta.get("progressToken"))
        self._stream_chunks = stream_chunks and self._token is not None
        self._started = time.perf_counter()
        self._audio_ms = 0.0
        self._seq = 0
        self.first_audio_ms: int | None = None
        self.last_audio = self.last_sent = self._started

    def start(self) -> None:
        """Start the clock for the time to first audio (after any wait in the queue)."""
        self._started = self.last_audio = self.last_sent = time.perf_counter()

    async def message(self, text: str) -> None:
        self.last_sent = time.perf_counter()
        await self._ctx.report_progress(round(self._audio_ms, 1), None, text)

    async def write(self, pcm: bytes) -> None:
        self._queued.got_audio = True
        await self.on_chunk(AudioChunk(pcm, self._sample_rate))

    async def close(self) -> None:
        pass

    async def abort(self) -> None:
        pass

    @property
    def audio_ms(self) -> float:
        return self._audio_ms

    async def on_chunk(self, chunk: AudioChunk) -> None:
        self.last_audio = self.last_sent = time.perf_counter()
        if self.first_audio_ms is None:
            self.first_audio_ms = round((time.perf_counter() - self._started) * 1000)
        offset_ms = self._audio_ms
        self._audio_ms += chunk.duration_ms
        self._seq += 1
        progress = round(self._audio_ms, 1)
        text = f"{progress:.0f} ms of audio; first audio after {self.first_audio_ms} ms"
        if not self._stream_chunks:
            await self._ctx.report_progress(progress, None, text)
            return
        meta = {
            AUDIO_META_KEY: {
                "seq": self._seq,
                "pcm_base64": encode_chunk(chunk.pcm),
                "format": "pcm_s16le",
                "channels": 1,
                "sample_rate": chunk.sample_rate,
                "offset_ms": round(offset_ms, 1),
                "duration_ms": round(chunk.duration_ms, 1),
            }
        }
        request = self._ctx.request_context
        notification = ProgressNotification(
            params=ProgressNotificationParams(progress_token=self._token, progress=progress, message=text, _meta=meta)
        )
        await request.session.send_notification(notification, related_request_id=request.request_id)


# ---------------------------------------------------------------------------------------------
# The tools


@dataclass(frozen=True)
class _SpeakArgs:
    text: str
    voice: str
    instruction: str | None
    sample_rate: int
    model: str | None
    language_type: str | None
    output: OutputMode
    filename: str | None
    play: bool
    stream_chunks: bool
    interrupt: bool = False
    format: str | None = None
    text_format: Literal["markdown", "plain"] = "markdown"


_HEARTBEAT_S = 2.0  # progress is reported at least this often, so clients that reset their timeout keep waiting


class _Stalled(TimeoutError):
    """No audio for the stall limit; the argument is the sentence for the caller."""


async def _heartbeat(progress: _Progress) -> None:
    """Report progress while the service is quiet, so that clients resetting their timeout on progress wait."""
    while True:
        await anyio.sleep(_HEARTBEAT_S / 4)
        now = time.perf_counter()
        if now - progress.last_sent >= _HEARTBEAT_S:
            await progress.message(f"waiting for audio ({now - progress.last_audio:.0f} s since the last)")


def _stall_sentence(progress: _Progress, stall_s: float) -> str:
    got = f"after {progress.audio_ms / 1000:.1f} s of audio" if progress.audio_ms else "before any audio"
    return (
        f"The speech stalled: the service sent no audio for {stall_s:g} s ({got}); "
        "try again shortly (the probe checks the connection)."
    )


@dataclasses.dataclass
class _Queueing:
    """Where one call stands (in the queue for a slot, audio or not yet), for the deadline's message."""

    waiting: bool = False
    waited: float = 0.0
    got_audio: bool = False


PREWARM_VOICE = "Cherry"  # the default voice of the CLI and the docs: `serve` opens one session for it


class _Speaker:
    """Runs ``tts_realtime`` calls: limits, deadline, engine, saving, playback, error mapping."""

    def __init__(self, settings: Settings, options: ServerOptions) -> None:
        self._settings = settings
        self._options = options
        # A limiter queues callers beyond the cap (FIFO) instead of failing them.
        self._limiter = anyio.CapacityLimiter(options.max_concurrent)
        # The server's one playback queue, open while the server runs (its lifespan).
        self.playback_queue: Speaker | None = None
        # Engines are long-lived and shared by every call (the realtime one keeps a pool of open
        # sockets); built on first use, on the serving event loop, and closed by aclose().
        self._engines: dict[str, tuple[Engine, str]] = {}

    def engine(self, choice: str) -> tuple[Engine, str]:
        """The shared engine for ``choice`` and the reason it was chosen (built once)."""
        if choice not in self._engines:
            self._engines[choice] = select_engine(self._settings, choice)
        return self._engines[choice]

    async def prewarm(self) -> None:
        """Open one realtime session for the default voice ahead of the first call (best effort)."""
        if not self._settings.has_key:
            return
        try:
            engine, _ = self.engine(self._options.engine)
            realtime = next((e for e in getattr(engine, "engines", (engine,)) if isinstance(e, RealtimeEngine)), None)
            if realtime is not None:
                await realtime.prewarm(build_request(text="prewarm", voice=PREWARM_VOICE))
                logger.info("prewarmed one realtime session for voice %s", PREWARM_VOICE)
        except TTSError as exc:
            logger.warning("could not prewarm a realtime session: %s", exc)

    async def aclose(self) -> None:
        """Close every shared engine (and so every pooled socket)."""
        engines, self._engines = list(self._engines.values()), {}
        for engine, _ in engines:
            try:
                await engine.aclose()
            except TTSError as exc:
                logger.warning("closing the %s engine: %s", engine.name, exc)

    async def __call__(self, ctx: Context, args: _SpeakArgs) -> CallToolResult:
        started = time.perf_counter()
        queued = _Queueing()
        try:
            result = await self._speak(ctx, args, queued)
        except TTSError as exc:
            logger.info("tts_realtime failed: %s: %s", type(exc).__name__, exc)
            return error_result(error_sentence(exc, self._settings))
        except _Stalled as exc:
            logger.info("tts_realtime: %s", exc)
            return error_result(str(exc))
        except TimeoutError:
            deadline = self._options.total_limit(args.text)
            if queued.waiting:
                sentence = (
                    f"The server was busy with {self._options.max_concurrent} other syntheses and could not "
                    f"start yours within {deadline:g} s; try again shortly."
                )
            elif queued.waited > deadline / 2:
                # The slot came free only near the deadline (often because the call ahead hit it too).
                sentence = (
                    f"The server was busy: your call waited {queued.waited:.1f} s for a free slot and then did not "
                    f"finish within the {deadline:g} s limit; try again shortly."
                )
            elif not queued.got_audio:
                sentence = (
                    f"The speech service sent no audio within the server's {deadline:g} s limit; "
                    "try again shortly (the probe checks the connection)."
                )
            else:
                sentence = f"Synthesis did not finish within the server's {deadline:g} s limit; try shorter text."
            logger.info("tts_realtime: %s", sentence)
            return error_result(sentence)
        except Exception:
            logger.exception("tts_realtime failed unexpectedly")
            return error_result("The TTS server hit an internal error (logged on its stderr); try again.")
        logger.info(
            "tts_realtime done: %s engine, %d ms of audio, first audio %s ms, %.0f ms in all",
            result.engine,
            result.duration_ms,
            result.first_audio_ms,
            (time.perf_counter() - started) * 1000,
        )
        return CallToolResult(content=speech_content(result), structured_content=result.model_dump(mode="json"))

    async def _speak(self, ctx: Context, args: _SpeakArgs, queued: _Queueing) -> SpeechResult:
        options = self._options
        # Cleaned first, so that a text with nothing left to read is refused before any paid call,
        # and the limits apply to the characters actually sent.
        # The parse is CPU work (tens of milliseconds for a few thousand characters): a worker thread
        # keeps the other calls moving.
        text = (
            await anyio.to_thread.run_sync(speakable_text, args.text) if args.text_format == "markdown" else args.text
        )
        if len(text) > options.max_text_chars:
            raise InvalidRequestError(
                f"text has {len(text)} characters but this server takes at most {options.max_text_chars} "
                "per call; split it into several calls.",
                field="text",
            )
        if args.filename is not None and args.output == "chunks":
            raise InvalidRequestError(
                "filename applies only to saved audio; use output 'file' or 'both' with it.", field="filename"
            )
        if args.format is not None and args.output == "chunks":
            raise InvalidRequestError(
                "format applies only to saved audio; use output 'file' or 'both' with it (chunks are PCM).",
                field="format",
            )
        audio_format = resolve_format(args.format, args.filename) if args.output != "chunks" else None
        request = build_request(
            text=text,
            voice=args.voice,
            instruction=args.instruction,
            sample_rate=args.sample_rate,
            model=args.model,
            language_type=args.language_type,
        )
        audio_dir: Path | None = None
        fallback_note: str | None = None
        path: Path | None = None
        if args.output != "chunks":  # file-system checks in a worker thread: a slow disk never stalls other calls
            folder, fallback_note = await anyio.to_thread.run_sync(
                writable_audio_dir, self._settings.audio_dir, options.data_dir
            )
            audio_dir = folder
            if fallback_note is not None:
                logger.warning("%s", fallback_note)
            if args.filename is not None and audio_format is not None:
                path = await anyio.to_thread.run_sync(confined_path, folder, args.filename, audio_format.extension)
        engine, reason = self.engine(options.engine)
        logger.info(
            "tts_realtime: %s engine, model %s, voice %s, %d characters, output %s",
            engine.name,
            request.model,
            request.voice,
            len(request.text),
            args.output,
        )
        progress = _Progress(ctx, stream_chunks=args.stream_chunks, sample_rate=request.sample_rate, queued=queued)
        turn: Turn | None = None
        if args.play or args.interrupt:
            if self.playback_queue is None:
                raise InvalidStateError("Playback is not available: the server is not running.")
            label = args.text if len(args.text) <= 60 else args.text[:57] + "..."
            turn = await self.playback_queue.turn(request.sample_rate, label, interrupt=args.interrupt)
        playback = turn.playback if turn is not None else None

        stall_s = options.stall_seconds
        stall_scope = anyio.CancelScope()

        async def on_chunk(chunk: AudioChunk) -> None:
            queued.got_audio = True
            if playback is not None:
                await playback.write(chunk.pcm)  # never waits for the player
            stall_scope.deadline = anyio.current_time() + stall_s  # the stall limit restarts with each chunk
            await progress.on_chunk(chunk)

        try:
            with anyio.CancelScope() as stop_scope:
                if turn is not None:
                    turn.cancel = stop_scope.cancel
                response = await self._synthesize(
                    ctx, args, request, engine, path, audio_dir, on_chunk, progress, queued, stall_scope
                )
        except BaseException:
            if playback is not None:
                await playback.abort()
            raise
        finally:
            if turn is not None:
                turn.cancel = None
        if stop_scope.cancelled_caught:
            if playback is not None:
                await playback.abort()
            raise _StoppedError("Stopped by tts_stop before the synthesis finished; nothing was saved.")
        if playback is not None:
            await playback.close()
        return SpeechResult(
            **response.model_dump(),
            engine_reason=reason,
            output_dir=str(audio_dir) if audio_dir is not None else None,
            output_dir_fallback=fallback_note,
            playback=turn.state if turn is not None else None,
            player=playback.player if playback is not None else None,
            playback_mode=playback.mode if playback is not None else None,
            playback_detail=turn.detail if turn is not None else None,
        )

    async def _synthesize(
        self,
        ctx: Context,
        args: _SpeakArgs,
        request: SpeechRequest,
        engine: Any,
        path: Path | None,
        audio_dir: Path | None,
        on_chunk: Any,
        progress: _Progress,
        queued: _Queueing,
        stall_scope: anyio.CancelScope,
    ) -> SpeechResponse:
        options = self._options
        stall_s = options.stall_seconds
        with anyio.fail_after(options.total_limit(args.text)):
            waited = time.perf_counter()
            if self._limiter.available_tokens == 0:
                queued.waiting = True
                await progress.message(f"queued behind {self._limiter.borrowed_tokens} running syntheses")
            async with self._limiter:
                queued.waiting, queued.waited = False, time.perf_counter() - waited
                progress.start()
                heartbeat = asyncio.create_task(_heartbeat(progress), name="tts_realtime progress heartbeat")
                try:
                    stall_scope.deadline = anyio.current_time() + stall_s
                    with stall_scope:
                        response = await synthesize(
                            request,
                            engine,
                            output=args.output,
                            path=path,
                            audio_dir=audio_dir,
                            on_chunk=on_chunk,
                            retry=options.retry,
                            format=args.format if args.output != "chunks" else None,  # checked in _speak
                            confine=True,
                            max_segment_chars=self._settings.max_segment_chars,
                        )
                finally:
                    heartbeat.cancel()
                if stall_scope.cancelled_caught:
                    raise _Stalled(_stall_sentence(progress, stall_s))
        return response


class _StoppedError(InvalidStateError):
    """The call was stopped by ``tts_stop`` while it was synthesizing."""


class _TTSServer(MCPServer[Any]):
    """MCPServer that hides some callable tools from ``tools/list`` and words argument errors.

    Hiding: ``tts.realtime`` stays callable for clients that follow the seed's name, while clients
    that reject dotted names never see it. Wording: the SDK reports arguments refused by the input
    schema as a multi-line pydantic dump; this turns them into one sentence.
    """

    def __init__(
        self, *args: Any, hidden_tools: frozenset[str] = frozenset(), speaker: _Speaker | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._hidden_tools = hidden_tools
        self.speaker = speaker

    async def aclose_engines(self) -> None:
        """Close the engines the calls share (every pooled realtime socket); the server may serve again."""
        if self.speaker is not None:
            await self.speaker.aclose()

    def kill_players(self) -> None:
        """SIGKILL every player now (from a signal handler: the process is about to exit)."""
        queue = self.speaker.playback_queue if self.speaker is not None else None
        if queue is not None:
            queue.kill_now()

    async def list_tools(self) -> list[Any]:
        return [tool for tool in await super().list_tools() if tool.name not in self._hidden_tools]

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError) and not isinstance(exc, UnexpectedToolError):
                raise ToolError(argument_error(exc.__cause__)) from exc.__cause__
            raise


def build_server(settings: Settings, options: ServerOptions | None = None) -> MCPServer[Any]:
    """Build the MCP server.

    Args:
        settings: Credentials, endpoints and the output directory (see :func:`~.settings.load_settings`).
        options: Server behaviour; default :class:`ServerOptions`.

    Returns:
        A new server with ``tts_realtime``, ``tts.realtime`` and ``tts_voices``, and a
        ``/healthz`` route for its HTTP app. Run it with :func:`~.mcp_stdio.run_stdio` or serve
        :func:`build_http_app`.
    """
    options = options or ServerOptions()
    speaker = _Speaker(settings, options)

    async def tts_realtime(
        ctx: Context,
        text: TextArg,
        voice: VoiceArg,
        instruction: InstructionArg = None,
        sample_rate: SampleRateArg = catalog.DEFAULT_SAMPLE_RATE,
        model: ModelArg = None,
        language_type: LanguageArg = None,
        output: OutputArg = "file",
        filename: FilenameArg = None,
        play: PlayArg = False,
        stream_chunks: StreamChunksArg = False,
        interrupt: InterruptArg = False,
        format: FormatArg = None,
        text_format: TextFormatArg = "markdown",
    ) -> Annotated[CallToolResult, SpeechResult]:
        args = _SpeakArgs(
            text,
            voice,
            instruction,
            sample_rate,
            model,
            language_type,
            output,
            filename,
            play,
            stream_chunks,
            interrupt,
            format,
            text_format,
        )
        return await speaker(ctx, args)

    async def tts_stop() -> Annotated[CallToolResult, StopResult]:
        queue = speaker.playback_queue
        turns = await queue.stop() if queue is not None else []
        stopped = [StoppedPlayback(text=t.label, state=t.was, synthesis_cancelled=t.was_synthesizing) for t in turns]
        result = StopResult(stopped=stopped)
        return CallToolResult(
            content=[TextContent(type="text", text=stop_text(result))],
            structured_content=result.model_dump(mode="json"),
        )

    async def tts_voices(model: VoicesModelArg = None) -> Annotated[CallToolResult, VoicesResult]:
        try:
            models = [catalog.model_info(model)] if model else list(catalog.MODELS.values())
        except InvalidRequestError as exc:
            return error_result(str(exc))
        result = VoicesResult(
            default_model=catalog.DEFAULT_MODEL,
            default_instruct_model=catalog.DEFAULT_INSTRUCT_MODEL,
            language_types=list(catalog.LANGUAGE_TYPES),
            engine=await _engine_summary(settings, options),
            models=[
                ModelVoices(
                    model=m.id,
                    family=m.family.value,
                    stable=m.stable,
                    takes_instruction=m.takes_instruction,
                    custom_voices_only=m.takes_custom_voices,
                    sample_rates=list(m.sample_rates),
                    voices=list(m.voices),
                )
                for m in models
            ],
        )
        return CallToolResult(
            content=[TextContent(type="text", text=voices_text(result))],
            structured_content=result.model_dump(mode="json"),
        )

    speak_description = (
        "Speak text aloud with Alibaba Cloud Qwen TTS Realtime (or the built-in offline voice when the "
        "server has no DashScope key). Saves a WAV file (or mp3, ogg, flac, pcm via format) and returns its "
        "path; output='chunks' returns base64 PCM. Markdown is read as a person would say it "
        "(text_format='plain': as written). Reports progress as audio arrives. Use tts_voices to pick a voice."
    )
    speak_annotations = ToolAnnotations(
        title="Speak text (Qwen TTS Realtime)",
        read_only_hint=False,
        destructive_hint=True,  # a given filename replaces an existing file of that name
        idempotent_hint=False,
        open_world_hint=True,
    )
    tools = [
        Tool.from_function(
            tts_realtime,
            name=name.value,
            title="Speak text (Qwen TTS Realtime)",
            description=speak_description,
            annotations=speak_annotations,
        )
        for name in (ToolName.TTS_REALTIME, ToolName.TTS_REALTIME_DOTTED)
    ]
    for tool in tools:
        # The limit is a server option, so the advertised schema gets it here; the tool checks it
        # itself to answer with a sentence that says how to split the text.
        tool.parameters["properties"]["text"]["maxLength"] = options.max_text_chars
    tools.append(
        Tool.from_function(
            tts_voices,
            name=ToolName.TTS_VOICES.value,
            title="List TTS voices",
            description=(
                "List the Qwen TTS realtime models, their voices and languages, which models take an "
                "instruction, and the engine this server uses."
            ),
            annotations=ToolAnnotations(
                title="List TTS voices", read_only_hint=True, idempotent_hint=True, open_world_hint=False
            ),
        )
    )
    tools.append(
        Tool.from_function(
            tts_stop,
            name=ToolName.TTS_STOP.value,
            title="Stop speaking",
            description=(
                "Stop what the server is playing aloud and clear its playback queue; a tts_realtime call with "
                "play that is still synthesizing is cancelled too (nothing of it is saved). Says what it stopped."
            ),
            annotations=ToolAnnotations(
                title="Stop speaking",
                read_only_hint=False,
                destructive_hint=False,
                idempotent_hint=True,
                open_world_hint=False,
            ),
        )
    )

    hidden = frozenset() if options.list_dotted_alias else frozenset({ToolName.TTS_REALTIME_DOTTED.value})
    server = _TTSServer(
        SERVER_NAME,
        title="Qwen TTS Realtime",
        version=__version__,
        instructions=(
            "Call tts_realtime with text and voice (e.g. 'Cherry') to speak; it returns the path of a "
            "WAV file. Call tts_voices to list voices and models."
        ),
        tools=tools,
        hidden_tools=hidden,
        speaker=speaker,
        lifespan=functools.partial(_engines_lifespan, speaker),
    )

    add_health_route(server)
    return server


@contextlib.asynccontextmanager
async def _engines_lifespan(speaker: _Speaker, _server: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
    """The server's lifespan (one per stdio run, in-memory client, or HTTP app): the engines built
    during it are shared by every call and closed at its end, which closes every pooled socket."""
    try:
        async with Speaker() as queue:  # the one playback queue: every player stops when the server exits
            speaker.playback_queue = queue
            try:
                yield {}
            finally:
                speaker.playback_queue = None
    finally:
        with anyio.CancelScope(shield=True):
            await speaker.aclose()


async def _engine_summary(settings: Settings, options: ServerOptions) -> str:
    try:
        engine, reason = select_engine(settings, options.engine)
    except TTSError as exc:
        return f"{options.engine}: unavailable ({exc})"
    await engine.aclose()
    if engine.name == "offline":
        reason += "; every voice is rendered by eSpeak NG (female or male by voice), not the Qwen voices"
    return reason


# ---------------------------------------------------------------------------------------------
# Entry point


def _options_from_args(args: argparse.Namespace) -> ServerOptions:
    token_file = getattr(args, "auth_token_file", None)
    token = (
        getattr(args, "auth_token", None)
        or (read_token_file(token_file) if token_file is not None else None)
        or os.environ.get(AUTH_TOKEN_ENV, "").strip()
        or None
    )
    given = {
        name: getattr(args, attr)
        for name, attr in (
            ("engine", "engine"),
            ("max_text_chars", "max_text_chars"),
            ("deadline_seconds", "deadline"),
            ("stall_seconds", "stall"),
            ("max_concurrent", "max_concurrent"),
            ("request_timeout", "request_timeout"),
            ("max_connections", "max_connections"),
        )
        if getattr(args, attr, None) is not None
    }
    given |= {
        name: tuple(getattr(args, name)) for name in ("allowed_hosts", "allowed_origins") if getattr(args, name, None)
    }
    return ServerOptions(list_dotted_alias=bool(getattr(args, "list_dotted_alias", False)), auth_token=token, **given)


async def _run_stdio_until_sigterm(server: MCPServer[Any]) -> None:
    """Serve on stdio; on SIGTERM, kill every player first, then die of the signal as usual.

    stdin is read in a worker thread that no cancellation reaches, so a graceful stop could wait
    for the client's next line; the players, in their own process groups, are what must not survive.
    """

    def terminate() -> None:
        if isinstance(server, _TTSServer):
            server.kill_players()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    with contextlib.suppress(NotImplementedError, AttributeError):  # Windows has no add_signal_handler
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
    await run_stdio(server)


def serve(args: argparse.Namespace) -> int:
    """Run the MCP server as ``alicloud-tts-realtime serve`` asks, until the client or a signal stops it.

    Args:
        args: The parsed ``serve`` arguments: ``transport`` (``stdio`` or ``http``), ``host``,
            ``port``, ``auth_token`` (else ``auth_token_file``, else ``TTS_MCP_AUTH_TOKEN``), ``engine``,
            ``allowed_hosts``, ``allowed_origins``, ``request_timeout``, ``max_connections``, and optionally
            ``list_dotted_alias``, ``max_text_chars``, ``deadline``, ``max_concurrent``.

    Returns:
        The exit code, 0.

    Raises:
        ConfigurationError: Invalid options, or a non-loopback host without a token.
    """
    settings = load_settings()
    options = _options_from_args(args)
    transport = getattr(args, "transport", "stdio")
    host = getattr(args, "host", "127.0.0.1")
    port = getattr(args, "port", 8765)
    prewarm = not getattr(args, "no_prewarm", False)
    server = build_server(settings, options)
    if transport == "stdio":
        # stdout is the protocol stream from here on: everything else goes to stderr.
        logger.info("MCP server on stdio (engine %s)", options.engine)
        # run_stdio answers every line, even one that is not a JSON-RPC message.
        anyio.run(_serving, server, functools.partial(_run_stdio_until_sigterm, server), prewarm)
        return 0
    app = build_http_app(server, options, host=host)
    anyio.run(_serving, server, functools.partial(serve_http, app, host, port, options), prewarm)
    return 0


async def _serving(server: Any, run: Callable[[], Awaitable[object]], prewarm: bool) -> None:
    """Run the server with its shared engines: prewarmed alongside (unless told not to), closed at the end.

    The prewarm runs beside the server, so a slow handshake never delays the client's ``initialize``.
    """
    assert server.speaker is not None
    try:
        async with anyio.create_task_group() as tg:
            if prewarm:
                tg.start_soon(server.speaker.prewarm)
            await run()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await server.aclose_engines()

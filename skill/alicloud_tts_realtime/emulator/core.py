"""The sans-I/O core of one emulated realtime session: client frames in, server actions out.

:class:`EmulatorSession` mirrors the client's session core. It has no sockets, no ``await`` and no
clock. The I/O layer (:mod:`.server`) drives it:

1. send what :meth:`EmulatorSession.opening` returns right after the upgrade;
2. feed every received frame to :meth:`~EmulatorSession.receive_frame` and perform the returned
   actions in order: send server events, hand :class:`StartResponse` / :class:`ContinueResponse` /
   :class:`CancelResponse` to its response runner, and obey :class:`CloseConnection` /
   :class:`DropConnection`;
3. for each response, in order: send :meth:`~EmulatorSession.begin_response`, then for each audio
   chunk perform :meth:`~EmulatorSession.before_delta` (fault injection, per connection and
   response, :class:`~.config.Fault`) and send
   :meth:`~EmulatorSession.audio_delta`, and finally perform
   :meth:`~EmulatorSession.finish_response`.

Responses run one after another (§3.6). In ``commit`` mode each commit is one response. In
``server_commit`` mode text is cut into segments that feed one *open* response, which only a
commit or ``session.finish`` closes: the observed service sends no ``response.done`` while it waits
for more text (§3.6).
"""

from __future__ import annotations

import enum
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from pydantic import ValidationError

from .. import catalog
from .. import protocol as p
from ..audio import encode_chunk
from ..errors import ProtocolViolationError
from .config import IDLE_CLOSE_REASON, EmulatorConfig
from .stats import EmulatorStats

__all__ = [
    "Action",
    "CancelResponse",
    "CloseConnection",
    "ContinueResponse",
    "DropConnection",
    "EmulatorSession",
    "Rechunker",
    "SessionState",
    "StartResponse",
    "billed_characters",
    "bounded_append",
]

THROTTLE_REASON = "To many requests. Your requests are being throttled..."  # sic, §3.8
UPDATE_REJECTED = "Session update error: session already started or finished or failed."  # §3.2
DEFAULT_VOICE = "Cherry"
_LEGACY_AUDIO_TOKENS_PER_SECOND = 50  # §3.9: legacy Qwen-TTS bills 50 audio tokens per second, at least 50


class SessionState(enum.Enum):
    """Where the session is; the legal client events per state are in :data:`_ACCEPTED`."""

    CONFIGURING = "configuring"  # no text yet: session.update is allowed
    STARTED = "started"  # text appended or a response started: session.update is rejected
    FINISHING = "finishing"  # session.finish received: finishing the responses
    FINISHED = "finished"  # session.finished sent: every event is rejected


_ANY: frozenset[str] = p.CLIENT_EVENT_TYPES
_ACCEPTED: dict[SessionState, frozenset[str]] = {
    SessionState.CONFIGURING: _ANY,
    SessionState.STARTED: _ANY - {"session.update"},
    SessionState.FINISHING: frozenset({"response.cancel"}),
    SessionState.FINISHED: frozenset(),
}


@dataclass(frozen=True)
class StartResponse:
    """Start a response: the runner must produce audio for ``text``, then wait for more.

    ``final`` says that no :class:`ContinueResponse` will follow; the voice fields are the session's
    configuration when the response started.
    """

    response_id: str
    item_id: str
    text: str
    voice: str
    sample_rate: int
    final: bool = True
    model: str = catalog.DEFAULT_MODEL
    language_type: str | None = None
    speech_rate: float = 1.0
    pitch_rate: float = 1.0
    volume: float = 50


@dataclass(frozen=True)
class ContinueResponse:
    """More text for an open server_commit response; ``final`` closes it (``text`` may be empty)."""

    response_id: str
    text: str
    final: bool


@dataclass(frozen=True)
class CancelResponse:
    """Stop producing audio for the response, then finish it with status ``cancelled``."""

    response_id: str


@dataclass(frozen=True)
class CloseConnection:
    """Send a close frame, after ``after_ms`` milliseconds, and stop the session."""

    code: int = 1000
    reason: str = ""
    after_ms: float = 0


@dataclass(frozen=True)
class DropConnection:
    """Abort the TCP connection without a close frame (the client sees 1006)."""


Action = Union[p.ServerEvent, StartResponse, ContinueResponse, CancelResponse, CloseConnection, DropConnection]


@dataclass
class _Response:
    start: StartResponse
    text: str
    response_format: str
    closed: bool
    ordinal: int  # 1-based, per connection
    cancelled: bool = False
    audio_bytes: int = 0
    deltas: int = 0


@dataclass
class _Settings:
    """The session configuration (§3.3); ``extra`` holds keys such as ``enable_tn``."""

    voice: str
    mode: Literal["server_commit", "commit"] = "server_commit"
    response_format: str = "pcm"
    sample_rate: int = catalog.DEFAULT_SAMPLE_RATE
    language_type: str | None = None
    speech_rate: float | None = None
    pitch_rate: float | None = None
    volume: float | None = None
    bit_rate: int | None = None
    instructions: str | None = None
    optimize_instructions: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Invalid(Exception):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def billed_characters(text: str) -> int:
    """Billed characters (§3.9): 2 per CJK ideograph (kanji and hanja included), 1 per other character."""
    return sum(2 if _is_ideograph(ch) else 1 for ch in text)


def _is_ideograph(ch: str) -> bool:
    code = ord(ch)
    return (
        0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3134F
    )


def bounded_append(items: list[Any], item: Any, limit: int) -> None:
    """Append ``item`` and drop the oldest entries beyond ``limit`` (records stay lists for tests)."""
    items.append(item)
    if len(items) > limit:
        del items[: len(items) - limit]


class EmulatorSession:
    """One emulated realtime session.

    Args:
        config: The emulator's behaviour knobs.
        model: The ``?model=`` query value, possibly unknown or empty.
        default_voice: The voice announced in ``session.created`` (observed: ``Cherry``).
        conn: The connection's 1-based ordinal, which scripted faults (:class:`~.config.Fault`) match.
        stats: The emulator's counters, updated on each commit; a private set when omitted.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        model: str,
        default_voice: str = DEFAULT_VOICE,
        *,
        conn: int = 1,
        stats: EmulatorStats | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.conn = conn
        self.stats = stats if stats is not None else EmulatorStats()
        self.info = catalog.MODELS.get(model)
        self.session_id = p.new_id("sess")
        self.state = SessionState.CONFIGURING
        # The most recent events only (config.max_events_per_session), so memory stays bounded.
        self.events_received: list[p.ClientEvent | p.UnknownEvent] = []
        self.deltas_sent = 0
        self.responses_started = 0
        self._close_when_idle = False
        self._settings = _Settings(voice=default_voice)
        self._buffer = ""
        self._responses: dict[str, _Response] = {}  # started and not yet finished, in order
        self._open: _Response | None = None  # the server_commit response still taking text

    # --- opening ------------------------------------------------------------------------------

    def opening(self) -> list[Action]:
        """What to do right after the upgrade: normally send ``session.created``."""
        if any(fault.throttle for fault in self.config.faults_for(self.conn)):
            return [CloseConnection(1011, THROTTLE_REASON)]
        if self.info is None and self.config.unknown_model == "error":
            message = f"Model not found: {self.model!r} is not a realtime TTS model."
            return [self._error(message, param="model"), CloseConnection(1000)]
        created = p.SessionCreated(session=self._session_config(created=True))
        if self.info is None:
            # §3.5 gotcha 1: an unknown model still gets session.created, then a silent close.
            return [created, CloseConnection(1000)]
        return [created]

    # --- client events ------------------------------------------------------------------------

    def receive_frame(self, frame: str | bytes) -> list[Action]:
        """Parse one client frame and return what to do; malformed frames get an ``error``."""
        try:
            event = p.parse_client_event(frame)
        except ProtocolViolationError as exc:
            return [self._error(exc.message, event_id=_peek_event_id(frame), param=_bad_field(exc))]
        return self.receive(event)

    def receive(self, event: p.ClientEvent | p.UnknownEvent) -> list[Action]:
        """Handle one parsed client event; errors keep the connection open (§3.8)."""
        bounded_append(self.events_received, event, self.config.max_events_per_session)
        if isinstance(event, p.UnknownEvent):
            event_id = event.raw.get("event_id")
            return [self._error(f"Unknown event type {event.type!r}.", event_id=_str_or_none(event_id), param="type")]
        if self.info is None:  # only reachable before the I/O layer performs the opening's close
            return [self._error(f"Model not found: {self.model!r}.", event_id=event.event_id, param="model")]
        if event.type not in _ACCEPTED[self.state]:
            return [self._rejected(event)]
        if isinstance(event, p.SessionUpdate):
            return self._update(event)
        if isinstance(event, p.InputTextBufferAppend):
            return self._append(event)
        if isinstance(event, p.InputTextBufferCommit):
            return self._commit(event)
        if isinstance(event, p.InputTextBufferClear):
            self._buffer = ""
            return [p.InputTextBufferCleared()]
        if isinstance(event, p.ResponseCancel):
            return self._cancel()
        return self._finish()

    def _rejected(self, event: p.ClientEvent) -> p.ErrorEvent:
        if isinstance(event, p.SessionUpdate):
            return self._error(UPDATE_REJECTED, event_id=event.event_id)
        message = f"Session is {self.state.value}; {event.type} is not accepted after session.finish."
        return self._error(message, event_id=event.event_id)

    def _update(self, event: p.SessionUpdate) -> list[Action]:
        try:
            self._settings = self._validated(event.session)
        except _Invalid as exc:
            return [self._error(exc.message, event_id=event.event_id, param=f"session.{exc.param}")]
        return [p.SessionUpdated(session=self._session_config())]

    def _validated(self, update: p.SessionConfig) -> _Settings:
        """Merge ``update`` into the current settings, checking each field against the model (§3.3)."""
        info = self.info
        assert info is not None  # receive() answers unknown models before this
        current = self._settings
        voice = update.voice
        if voice is None or not voice.strip():
            raise _Invalid("voice", "voice is required.")
        if not info.takes_custom_voices and voice not in info.voices:
            raise _Invalid("voice", f"Voice {voice!r} is not supported by model {info.id!r}.")
        if info.takes_custom_voices and catalog.is_system_voice(voice):  # only voices enrolled for it (§4.1)
            raise _Invalid("voice", f"Voice {voice!r} is not supported by model {info.id!r}.")
        fmt = update.response_format or current.response_format
        if fmt not in info.formats:
            raise _Invalid(
                "response_format", f"response_format {fmt!r} is not supported; use {'/'.join(info.formats)}."
            )
        rate = update.sample_rate if update.sample_rate is not None else current.sample_rate
        if rate not in info.sample_rates:
            rates = "/".join(map(str, info.sample_rates))
            raise _Invalid("sample_rate", f"sample_rate {rate} is not supported by model {info.id!r}; use {rates}.")
        for name, low, high in (
            ("speech_rate", 0.5, 2.0),
            ("pitch_rate", 0.5, 2.0),
            ("volume", 0, 100),
            ("bit_rate", 6, 510),
        ):
            value = getattr(update, name)
            if value is not None and not low <= value <= high:
                raise _Invalid(name, f"{name} must be between {low} and {high}, not {value}.")
        if not info.takes_instruction:
            # An empty instruction (as in the documented example) is harmless; a real one is not.
            if update.instructions:
                raise _Invalid("instructions", f"Model {info.id!r} does not support instructions.")
            if update.optimize_instructions:
                raise _Invalid("optimize_instructions", f"Model {info.id!r} does not support optimize_instructions.")
        language = current.language_type
        if update.language_type is not None:
            if update.language_type.lower() not in {lang.lower() for lang in catalog.LANGUAGE_TYPES}:
                choices = ", ".join(catalog.LANGUAGE_TYPES)
                raise _Invalid(
                    "language_type", f"language_type {update.language_type!r} is not supported; use {choices}."
                )
            language = update.language_type.lower()  # observed: echoed lower-cased (§3.3)
        return _Settings(
            voice=voice,
            mode=update.mode or current.mode,
            response_format=fmt,
            sample_rate=rate,
            language_type=language,
            speech_rate=_pick(update.speech_rate, current.speech_rate),
            pitch_rate=_pick(update.pitch_rate, current.pitch_rate),
            volume=_pick(update.volume, current.volume),
            bit_rate=_pick(update.bit_rate, current.bit_rate),
            instructions=_pick(update.instructions, current.instructions),
            optimize_instructions=_pick(update.optimize_instructions, current.optimize_instructions),
            extra={**current.extra, **(update.model_extra or {})},
        )

    def _append(self, event: p.InputTextBufferAppend) -> list[Action]:
        self.state = SessionState.STARTED
        self._buffer += event.text
        if self._settings.mode == "commit":
            return []  # §3.6: nothing happens until a commit
        actions: list[Action] = []
        for segment in self._cut_segments():
            if self.config.emit_committed_on_auto:
                actions.append(p.InputTextBufferCommitted())
            actions.append(self._feed(segment, final=False))
        return actions

    def _commit(self, event: p.InputTextBufferCommit) -> list[Action]:
        # A rejected commit drops its text (emulator choice): the utterance failed, nothing of it stays.
        text, self._buffer = self._buffer, ""
        limit = self.config.max_commit_chars
        error: p.ErrorEvent | None = None
        if not text and self._open is None:
            error = self._error("Input text buffer is empty; append text before committing.", event_id=event.event_id)
        elif limit is not None and len(text) > limit:
            message = f"Text is too long: the commit holds {len(text)} characters and at most {limit} are allowed."
            error = self._error(message, event_id=event.event_id, param="text")
        elif self._open is None and self._responses and self.config.commit_while_responding == "reject":
            message = "A response is already in progress; wait for response.done before committing again."
            error = self._error(message, event_id=event.event_id)
        self.stats.commit_seen(len(text), accepted=error is None)
        if error is not None:
            return [error]
        self.state = SessionState.STARTED
        return [p.InputTextBufferCommitted(), self._feed(text, final=True)]

    def _cancel(self) -> list[Action]:
        active = next(iter(self._responses.values()), None)
        if active is None or active.cancelled:
            return []  # emulator choice (§11 q4): cancelling nothing is a no-op
        active.cancelled = active.closed = True
        if self._open is active:
            self._open = None
        return [CancelResponse(active.start.response_id)]

    def _finish(self) -> list[Action]:
        self.state = SessionState.FINISHING
        actions: list[Action] = []
        text, self._buffer = self._buffer, ""
        if text.strip() or self._open is not None:
            actions.append(self._feed(text, final=True))
        if not self._responses:
            actions.extend(self._finished())
        return actions

    def _finished(self) -> list[Action]:
        self.state = SessionState.FINISHED
        actions: list[Action] = [p.SessionFinished()]
        if self.config.close_after_finished_ms is not None:
            actions.append(CloseConnection(1000, after_ms=self.config.close_after_finished_ms))
        return actions

    # --- segmentation and responses -----------------------------------------------------------

    def _cut_segments(self) -> list[str]:
        """Cut complete segments off the buffer (server_commit mode, emulator rule, §3.6)."""
        segments: list[str] = []
        while True:
            end = self._segment_end(self._buffer)
            if end is None:
                return segments
            segments.append(self._buffer[:end])
            self._buffer = self._buffer[end:]

    def _segment_end(self, text: str) -> int | None:
        marks = self.config.server_commit_punctuation
        for i, ch in enumerate(text):
            if ch not in marks:
                continue
            if ch == "." and i + 1 < len(text) and not text[i + 1].isspace():
                continue  # "3.14", "e.g.x": not a sentence end
            end = i + 1
            while end < len(text) and text[end] in marks:
                end += 1  # "?!" and "..." end together
            if text[:end].strip(marks + " \t\r\n"):
                return end
        if len(text) >= self.config.server_commit_min_chars:
            space = text.rfind(" ", 1)
            return space + 1 if space > 0 else len(text)
        return None

    def _feed(self, text: str, *, final: bool) -> StartResponse | ContinueResponse:
        """Give ``text`` to the open response, or start one; ``final`` closes it."""
        if self._open is not None:
            response = self._open
            response.text += text
            response.closed = final
            if final:
                self._open = None
            return ContinueResponse(response.start.response_id, text, final)
        s = self._settings
        start = StartResponse(
            response_id=p.new_id("resp"),
            item_id=p.new_id("item"),
            text=text,
            voice=s.voice,
            sample_rate=s.sample_rate,
            final=final,
            model=self.model,
            language_type=s.language_type,
            speech_rate=s.speech_rate or 1.0,
            pitch_rate=s.pitch_rate or 1.0,
            volume=50 if s.volume is None else s.volume,
        )
        self.responses_started += 1
        self.stats.responses += 1
        response = _Response(start, text, s.response_format, closed=final, ordinal=self.responses_started)
        self._responses[start.response_id] = response
        if not final:
            self._open = response
        return start

    def begin_response(self, ctx: StartResponse) -> list[Action]:
        """The frames that open a response, up to ``response.content_part.added`` (§3.5)."""
        return [
            p.ResponseCreated(response=p.ResponseInfo(id=ctx.response_id, voice=ctx.voice)),
            p.ResponseOutputItemAdded(response_id=ctx.response_id, item=p.Item(id=ctx.item_id, content=[])),
            p.ResponseContentPartAdded(response_id=ctx.response_id, item_id=ctx.item_id),
        ]

    def before_delta(self, ctx: StartResponse | None = None) -> list[Action]:
        """Fault injection before each delta of ``ctx`` (default: the running response).

        Returns nothing, or the actions that replace the delta. A fault for one response counts
        that response's deltas; a fault for every response counts the connection's.
        """
        response = self._responses.get(ctx.response_id) if ctx else next(iter(self._responses.values()), None)
        for fault in self.config.faults_for(self.conn):
            if fault.response is not None:
                if response is None or fault.response != response.ordinal:
                    continue
                count = response.deltas
            else:
                count = self.deltas_sent
            if fault.drop_after is not None and count >= fault.drop_after:
                return [DropConnection()]
            if fault.fail_after is not None and count >= fault.fail_after:
                return self.server_failure("Internal server error while synthesizing (injected by the emulator).")
        return []

    def audio_delta(self, ctx: StartResponse, pcm: bytes) -> p.ResponseAudioDelta:
        """One ``response.audio.delta`` carrying ``pcm`` (PCM16 LE mono, an even number of bytes).

        For ``wav`` output the first delta of each response starts with a streaming WAV header
        (emulator choice, §11 q8); ``mp3`` and ``opus`` are not encoded and carry PCM.
        """
        if len(pcm) % 2:
            raise ValueError("PCM16 audio must be an even number of bytes")
        response = self._responses[ctx.response_id]
        payload = pcm
        if response.response_format == "wav" and response.deltas == 0:
            payload = _wav_header(ctx.sample_rate) + pcm
        response.audio_bytes += len(pcm)
        response.deltas += 1
        self.deltas_sent += 1
        return p.ResponseAudioDelta(response_id=ctx.response_id, item_id=ctx.item_id, delta=encode_chunk(payload))

    def finish_response(self, ctx: StartResponse, status: str = "completed") -> list[Action]:
        """The frames that close a response, from ``response.audio.done`` to ``response.done``.

        When this was the last response after ``session.finish``, ``session.finished`` follows.
        """
        response = self._responses.pop(ctx.response_id)
        if self._open is response:
            self._open = None
        if any(fault.close_idle for fault in self.config.faults_for(self.conn, response.ordinal)):
            self._close_when_idle = True
        usage = self._usage(response)
        item_status = "completed" if status == "completed" else "incomplete"
        # Observed (§3.4): output_item.done nests the token usage and has no content.
        tokens = usage.model_dump(exclude={"characters"}, exclude_none=True)
        done_item = p.Item.model_validate({"id": ctx.item_id, "status": item_status, "output": {"usage": tokens}})
        final_item = p.Item(id=ctx.item_id, status=item_status, content=[p.ContentPart(transcript="")])
        actions: list[Action] = [
            p.ResponseAudioDone(response_id=ctx.response_id, item_id=ctx.item_id),
            p.ResponseContentPartDone(response_id=ctx.response_id, item_id=ctx.item_id),
            p.ResponseOutputItemDone(response_id=ctx.response_id, item=done_item),
            p.ResponseDone(
                response=p.ResponseInfo(
                    id=ctx.response_id,
                    status=status,
                    modalities=["text", "audio"],
                    voice=ctx.voice,
                    output=[final_item],
                    usage=usage,
                )
            ),
        ]
        if self.state is SessionState.FINISHING and not self._responses:
            actions.extend(self._finished())
        if self._close_when_idle and not self._responses:
            actions.append(CloseConnection(1000, IDLE_CLOSE_REASON))  # a scripted close of an idle socket
        return actions

    @property
    def responding(self) -> bool:
        """Whether a response is running or queued (the connection is not idle)."""
        return bool(self._responses)

    def server_failure(self, message: str) -> list[Action]:
        """A server error: an ``error`` of type ``server_error``, then close 1011 (§3.8)."""
        error = self._error(message, error_type="server_error", code="internal_error")
        return [error, CloseConnection(1011, "Internal server error")]

    # --- helpers ------------------------------------------------------------------------------

    def _usage(self, response: _Response) -> p.Usage:
        """§3.9: Qwen3 bills characters; tokens are informational (rate is a knob, §9)."""
        characters = billed_characters(response.text)
        seconds = response.audio_bytes / 2 / response.start.sample_rate
        input_tokens = max(1, round(characters / 3)) if characters else 0
        legacy = self.info is not None and self.info.family is catalog.Family.LEGACY
        if legacy:
            rate = _LEGACY_AUDIO_TOKENS_PER_SECOND
            audio_tokens = max(rate, math.ceil(seconds * rate)) if response.audio_bytes else 0
        else:
            audio_tokens = math.ceil(seconds * self.config.audio_tokens_per_second)
        return p.Usage(
            characters=None if legacy else characters,
            input_tokens=input_tokens,
            output_tokens=audio_tokens,
            total_tokens=input_tokens + audio_tokens,
            input_tokens_details={"text_tokens": input_tokens},
            output_tokens_details={"text_tokens": 0, "audio_tokens": audio_tokens},
        )

    def _session_config(self, *, created: bool = False) -> p.SessionConfig:
        s = self._settings
        fields: dict[str, Any] = {
            "id": self.session_id,
            "object": "realtime.session",
            "model": self.model,
            "voice": s.voice,
            "mode": s.mode,
            "response_format": s.response_format,
            "sample_rate": s.sample_rate,
        }
        if not created:
            fields["language_type"] = s.language_type
            if self.config.echo_extra_fields:
                for name in (
                    "speech_rate",
                    "pitch_rate",
                    "volume",
                    "bit_rate",
                    "instructions",
                    "optimize_instructions",
                ):
                    fields[name] = getattr(s, name)
                fields.update(s.extra)
        return p.SessionConfig(**fields)

    def _error(
        self,
        message: str,
        *,
        event_id: str | None = None,
        param: str | None = None,
        error_type: str = "invalid_request_error",
        code: str = "invalid_value",
    ) -> p.ErrorEvent:
        if self.config.error_shape == "short":
            detail = p.ErrorDetail(code=code, message=message, event_id=event_id)
        else:
            detail = p.ErrorDetail(type=error_type, code=code, message=message, param=param, event_id=event_id)
        return p.ErrorEvent(error=detail)


class Rechunker:
    """Cut a PCM16 stream into deltas of exactly ``chunk_bytes`` (an even number) bytes.

    Feed arbitrary pieces with :meth:`feed`; at the end of a segment, :meth:`flush` returns the
    shorter remainder so that audio is not held back waiting for text that may never come.
    """

    def __init__(self, sample_rate: int, chunk_ms: int) -> None:
        self.chunk_bytes = max(2, round(sample_rate * chunk_ms / 1000) * 2)
        self._pending = bytearray()

    def feed(self, pcm: bytes) -> list[bytes]:
        self._pending += pcm
        size = self.chunk_bytes
        count = len(self._pending) // size
        chunks = [bytes(self._pending[i * size : (i + 1) * size]) for i in range(count)]
        del self._pending[: count * size]
        return chunks

    def flush(self) -> list[bytes]:
        usable = len(self._pending) - len(self._pending) % 2
        chunk = bytes(self._pending[:usable])
        self._pending.clear()
        return [chunk] if chunk else []


def _pick(new: Any, old: Any) -> Any:
    return old if new is None else new


def _wav_header(sample_rate: int) -> bytes:
    unknown = 0xFFFFFFFF  # streaming: the total length is not known when the header is sent
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", unknown)
    )


def _peek_event_id(frame: str | bytes) -> str | None:
    """The ``event_id`` of a frame that failed to parse, so the error can point at it."""
    if isinstance(frame, bytes):
        return None
    try:
        data = json.loads(frame)
    except ValueError:
        return None
    return _str_or_none(data.get("event_id")) if isinstance(data, dict) else None


def _bad_field(exc: ProtocolViolationError) -> str | None:
    # protocol.py raises ``from None`` but keeps the pydantic error as the context: use its location.
    cause = exc.__context__
    if isinstance(cause, ValidationError) and cause.errors():
        loc: Sequence[Any] = cause.errors()[0]["loc"][1:]
        return ".".join(map(str, loc)) or None
    return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None

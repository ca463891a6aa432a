"""The sans-I/O client session: server events in, client events and audio out.

:class:`ClientSession` knows the realtime protocol's order and nothing about sockets, tasks or
clocks. The driver (:mod:`.engines.realtime`) feeds it every parsed server event with
:meth:`ClientSession.receive`, sends the client events it returns, and surfaces the audio and
outcomes it produces. Requests for speech and the end of the session go through
:meth:`ClientSession.speak` and :meth:`ClientSession.finish`, which also return the events to
send. The legal order lives in one table, :data:`ALLOWED`; anything else is a protocol violation.

A session can carry several utterances (``commit`` mode: one response per commit, §3.6), which is
what a warm pool of pre-opened sessions will reuse. In ``server_commit`` mode the service segments
the appended text itself and may start responses while the client is idle or finishing; that is
the mode for text that arrives in pieces (an LLM's tokens).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from . import protocol as p
from .audio import decode_chunk
from .errors import InvalidStateError, NoAudioError, ProtocolViolationError, ServiceError
from .models import FinishReason, SynthesisOutcome

__all__ = [
    "ALLOWED",
    "Audio",
    "ClientSession",
    "Finished",
    "Output",
    "Ready",
    "ResponseComplete",
    "Send",
    "SessionState",
    "Utterance",
]

logger = logging.getLogger(__name__)


class SessionState(enum.Enum):
    """Where the session stands, from the client's side."""

    CONNECTING = "connecting"  # socket open, waiting for session.created
    CONFIGURING = "configuring"  # session.update sent, waiting for session.updated
    READY = "ready"  # configured and idle: speak() or finish()
    RESPONDING = "responding"  # text committed, response in progress
    FINISHING = "finishing"  # session.finish sent, waiting for session.finished
    FINISHED = "finished"  # session.finished received; the driver closes the socket
    FAILED = "failed"  # an error event or a protocol violation ended the session


_RESPONSE_EVENTS = frozenset(p.RESPONSE_CYCLE) | {"input_text_buffer.committed"}

# Which server events may arrive in each state (§3.5). ``error`` is allowed everywhere and handled
# first. ``input_text_buffer.committed`` may come unsolicited (RUST-RT tolerates it in
# server_commit), and a response may still be completing after session.finish was sent (§3.6).
ALLOWED: dict[SessionState, frozenset[str]] = {
    SessionState.CONNECTING: frozenset({"session.created"}),
    SessionState.CONFIGURING: frozenset({"session.updated"}),
    SessionState.READY: frozenset({"input_text_buffer.committed", "input_text_buffer.cleared"}),
    SessionState.RESPONDING: _RESPONSE_EVENTS | {"input_text_buffer.cleared"},
    SessionState.FINISHING: _RESPONSE_EVENTS | {"session.finished"},
    SessionState.FINISHED: frozenset(),
    SessionState.FAILED: frozenset(),
}
# server_commit: the service starts responses on its own, so an idle session may receive them too.
_SERVER_COMMIT_READY = ALLOWED[SessionState.READY] | _RESPONSE_EVENTS


@dataclass(frozen=True, slots=True)
class Send:
    """A client event the driver must send now, in order."""

    event: p.SessionUpdate | p.InputTextBufferAppend | p.InputTextBufferCommit | p.SessionFinish


@dataclass(frozen=True, slots=True)
class Ready:
    """The service accepted the configuration; the session can speak."""

    session: p.SessionConfig


@dataclass(frozen=True, slots=True)
class Audio:
    """Decoded PCM16 audio of one response, in arrival order."""

    pcm: bytes
    response_id: str


@dataclass(frozen=True, slots=True)
class ResponseComplete:
    """A response ended; ``status`` is ``completed``, ``cancelled``, ``incomplete`` or ``failed``."""

    response_id: str
    status: str
    usage: p.Usage | None


@dataclass(frozen=True, slots=True)
class Finished:
    """``session.finished`` arrived: close the socket (the real service may not, §3.8)."""


Output = Send | Ready | Audio | ResponseComplete | Finished


def _same(requested: object, echoed: object) -> bool:
    if requested is None or echoed is None:
        return True  # unset on our side, or not echoed by the service (§11 q2)
    if isinstance(requested, str) and isinstance(echoed, str):
        return requested.lower() == echoed.lower()  # language_type comes back lower-cased (§3.3)
    return requested == echoed


class ClientSession:
    """Client-side state machine of one realtime session.

    Args:
        config: The ``session`` object to send in ``session.update`` once ``session.created``
            arrives. Its ``voice`` and ``sample_rate`` are checked against the echo.

    Attributes:
        state: The current :class:`SessionState`.
        session_id: The service's ``sess_…`` id, once known.
        model: The model the service says it serves (echo of ``?model=``), once known.
    """

    def __init__(self, config: p.SessionConfig) -> None:
        self.config = config
        self.state = SessionState.CONNECTING
        self.session_id: str | None = None
        self.model: str | None = None
        self._response_id: str | None = None
        self._pending_commits = 0

    def receive(self, event: p.ServerEvent | p.UnknownEvent) -> Sequence[Output]:
        """Feed one parsed server event; return what the driver must send or surface.

        Raises:
            ServiceError: The service sent an ``error`` event.
            ProtocolViolationError: The event is not allowed in the current state, or the
                configuration echo contradicts what was requested.
        """
        if isinstance(event, p.UnknownEvent):
            logger.info("ignoring unknown server event %r", event.type)
            return ()
        if isinstance(event, p.ErrorEvent):
            self.state = SessionState.FAILED
            err = event.error
            raise ServiceError(
                f"The service rejected the request: {err.message or err.code or 'unknown error'}",
                error_type=err.type,
                code=err.code,
                param=err.param,
                event_id=err.event_id,
            )
        allowed = ALLOWED[self.state]
        if self.state is SessionState.READY and self.server_commit:
            allowed = _SERVER_COMMIT_READY
        if event.type not in allowed:
            state, self.state = self.state, SessionState.FAILED
            raise ProtocolViolationError(f"Unexpected {event.type!r} while the session is {state.value}.")
        return self._handle(event)

    def _handle(self, event: p.ServerEvent) -> Sequence[Output]:
        if isinstance(event, p.SessionCreated):
            self.session_id = event.session.id
            self.model = event.session.model
            self.state = SessionState.CONFIGURING
            return (Send(p.SessionUpdate(session=self.config)),)
        if isinstance(event, p.SessionUpdated):
            for field in ("voice", "sample_rate", "mode", "response_format", "language_type"):
                if not _same(getattr(self.config, field), getattr(event.session, field)):
                    self.state = SessionState.FAILED
                    raise ProtocolViolationError(
                        f"The service configured {field}={getattr(event.session, field)!r}, "
                        f"not the requested {getattr(self.config, field)!r}."
                    )
            self.session_id = event.session.id or self.session_id
            self.state = SessionState.READY
            return (Ready(event.session),)
        if isinstance(event, p.ResponseCreated):
            self._response_id = event.response.id
            return ()
        if isinstance(event, p.ResponseAudioDelta):
            if self._response_id is None:
                self._response_id = event.response_id  # tolerate a missing response.created
            return (Audio(decode_chunk(event.delta), event.response_id),)
        if isinstance(event, p.ResponseDone):
            self._response_id = None
            self._pending_commits = max(0, self._pending_commits - 1)
            if self.state is SessionState.RESPONDING and self._pending_commits == 0:
                self.state = SessionState.READY
            return (ResponseComplete(event.response.id, event.response.status, event.response.usage),)
        if isinstance(event, p.SessionFinished):
            self.state = SessionState.FINISHED
            return (Finished(),)
        return ()  # committed, cleared and the structural response.* events carry nothing to surface

    @property
    def server_commit(self) -> bool:
        """Whether the service segments the text itself (``mode: server_commit``)."""
        return self.config.mode == "server_commit"

    def speak(self, text: str) -> Sequence[Send]:
        """Queue ``text``; return the events to send.

        ``commit`` mode: append and commit, one response. ``server_commit`` mode: append only; the
        service decides when to speak, and :meth:`finish` flushes the rest.

        Raises:
            InvalidStateError: The session is not ready (not yet configured, or finished).
        """
        if self.state not in (SessionState.READY, SessionState.RESPONDING):
            raise InvalidStateError(f"Cannot speak: the session is {self.state.value}.")
        if self.server_commit:
            return (Send(p.InputTextBufferAppend(text=text)),)
        self.state = SessionState.RESPONDING
        self._pending_commits += 1
        return (Send(p.InputTextBufferAppend(text=text)), Send(p.InputTextBufferCommit()))

    def finish(self) -> Sequence[Send]:
        """End the session after pending responses; return the ``session.finish`` event to send.

        Raises:
            InvalidStateError: The session is not configured yet, or already finishing or over.
        """
        if self.state not in (SessionState.READY, SessionState.RESPONDING):
            raise InvalidStateError(f"Cannot finish: the session is {self.state.value}.")
        self.state = SessionState.FINISHING
        return (Send(p.SessionFinish()),)

    @property
    def responding(self) -> bool:
        """Whether a response is pending: committed and not done, or started by the service (server_commit)."""
        return self._pending_commits > 0 or self._response_id is not None


_FINISH_REASONS: dict[str, FinishReason] = {"completed": "stop", "cancelled": "cancelled", "incomplete": "incomplete"}


class Utterance:
    """The policy of a one-utterance session, on top of :class:`ClientSession`.

    Speaks ``text`` as soon as the configuration is accepted, finishes the session when the response
    completes, collects the audio, and turns the end of the session into an outcome. Both drivers of
    the protocol (the native client and the official-SDK bridge) use it, so they cannot drift.
    In ``server_commit`` mode it appends the text and finishes at once, as the SDK's sample does;
    the service's segments may make several responses, whose billed characters add up.

    Args:
        config: The ``session.update`` body.
        text: The text to speak.
    """

    def __init__(self, config: p.SessionConfig, text: str) -> None:
        self.core = ClientSession(config)
        self.text = text
        self.got_audio = False
        self._status: str | None = None
        self._characters: int | None = None

    @property
    def finished(self) -> bool:
        return self.core.state is SessionState.FINISHED

    def receive(self, event: p.ServerEvent | p.UnknownEvent) -> tuple[list[p.ClientEvent], list[bytes]]:
        """Feed one server event; return the client events to send now and the audio to surface.

        Raises:
            ServiceError, ProtocolViolationError: As :meth:`ClientSession.receive`.
        """
        sends: list[p.ClientEvent] = []
        audio: list[bytes] = []
        for out in self.core.receive(event):
            if isinstance(out, Send):
                sends.append(out.event)
            elif isinstance(out, Audio):
                self.got_audio = True
                audio.append(out.pcm)
            elif isinstance(out, Ready):
                sends.extend(send.event for send in self.core.speak(self.text))
                if self.core.server_commit:
                    sends.extend(send.event for send in self.core.finish())
            elif isinstance(out, ResponseComplete):
                if self._status in (None, "completed"):  # the first response that did not complete decides
                    self._status = out.status
                if out.usage is not None and out.usage.characters is not None:
                    self._characters = (self._characters or 0) + out.usage.characters
                if not self.core.server_commit:
                    sends.extend(send.event for send in self.core.finish())
        return sends, audio

    def outcome(self, model: str) -> SynthesisOutcome:
        """The outcome once ``session.finished`` arrived.

        Args:
            model: The requested model, used when the service did not echo one.

        Raises:
            ServiceError: The response failed.
            NoAudioError: The session completed without audio.
            ProtocolViolationError: The response ended with an unknown status.
        """
        status = self._status or "completed"
        if status == "failed":
            raise ServiceError("The service reported the response as failed.")
        if not self.got_audio:
            raise NoAudioError(
                f"The session completed without audio (response status {status!r}); check the text and the voice."
            )
        if status not in _FINISH_REASONS:
            raise ProtocolViolationError(f"Unknown response status {status!r}.")
        return SynthesisOutcome(
            finish_reason=_FINISH_REASONS[status],
            model=self.core.model or model,
            characters=self._characters,
            session_id=self.core.session_id,
        )

"""The sans-I/O client session: server events in, client events and tagged outputs out.

:class:`ClientSession` knows the realtime protocol's order and nothing about sockets, tasks or
clocks (h11's and wsproto's design). A driver (:mod:`.connection`, or the SDK bridge in
:mod:`.engines.sdk`) feeds it every parsed server event with :meth:`ClientSession.receive` and
surfaces the outputs it returns; the client calls (:meth:`~ClientSession.configure`,
:meth:`~ClientSession.append`, :meth:`~ClientSession.commit`, :meth:`~ClientSession.clear`,
:meth:`~ClientSession.finish`) queue client events, which the driver takes with
:meth:`ClientSession.take_sends` and sends in order.

The session exists before it is configured, so that a pool can hold connected sessions and
configure one for whichever voice is asked for next::

    CONNECTING --session.created--> CREATED --configure()--> CONFIGURING --session.updated--> READY
    READY --commit()--> RESPONDING --response.done (last pending)--> READY
    READY/RESPONDING/CREATED --finish()--> FINISHING --session.finished--> CLOSED
    any --error event / violation / connection_lost()--> FAILED

Every legal step is one entry of :data:`TRANSITIONS`; anything else is a protocol violation
(server events) or an :class:`~.errors.InvalidStateError` (client calls).

Utterances: in ``commit`` mode each :meth:`~ClientSession.commit` is one utterance, whose id is the
commit's ``event_id``; responses follow commits in order (§3.6), and every :class:`Audio` and
:class:`ResponseComplete` carries the utterance it belongs to. An ``invalid_request_error`` whose
``event_id`` names one pending commit fails that utterance only (:class:`UtteranceFailed`) and the
session stays usable. ``session.update`` after text is refused by the service (§3.2), so a
configured session serves one voice configuration for life: :meth:`~ClientSession.configure` is
allowed once. In ``server_commit`` mode the service segments the appended text itself and starts
responses on its own; their outputs are tagged with the response id.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from . import protocol as p
from .audio import decode_chunk
from .errors import InvalidStateError, NoAudioError, ProtocolViolationError, ServiceError
from .models import FinishReason, SynthesisOutcome
from .quoting import quote

__all__ = [
    "TRANSITIONS",
    "Audio",
    "ClientSession",
    "Created",
    "Finished",
    "Output",
    "Ready",
    "ResponseComplete",
    "SessionState",
    "Utterance",
    "UtteranceFailed",
]

logger = logging.getLogger(__name__)


class SessionState(enum.Enum):
    """Where the session stands, from the client's side."""

    CONNECTING = "connecting"  # socket open, waiting for session.created
    CREATED = "created"  # session.created received; not configured yet (a pool may hold it so)
    CONFIGURING = "configuring"  # session.update sent, waiting for session.updated
    READY = "ready"  # configured and idle: append/commit or finish
    RESPONDING = "responding"  # a commit (or a service-started response) is pending
    FINISHING = "finishing"  # session.finish sent, waiting for session.finished
    CLOSED = "closed"  # session.finished received, or the socket closed cleanly after it
    FAILED = "failed"  # an error event, a protocol violation or a lost connection ended it


S = SessionState
_RESPONSE = tuple(p.RESPONSE_CYCLE)
# Server events that may arrive in the state without changing it.
_STAY_RESPONDING = {name: S.RESPONDING for name in _RESPONSE if name != "response.done"}
_STAY_FINISHING = {name: S.FINISHING for name in _RESPONSE}

# The one transition table: state -> {server event type or client call ("call:…"): next state}.
# ``response.done`` in RESPONDING goes to READY only when no other commit is pending (see _advance).
# ``input_text_buffer.committed`` may come unsolicited (RUST-RT tolerates it in server_commit), and
# a response may still be completing after session.finish was sent (§3.6).
TRANSITIONS: dict[SessionState, dict[str, SessionState]] = {
    S.CONNECTING: {"session.created": S.CREATED},
    S.CREATED: {"call:configure": S.CONFIGURING, "call:finish": S.FINISHING},
    S.CONFIGURING: {"session.updated": S.READY},
    S.READY: {
        "input_text_buffer.committed": S.READY,
        "input_text_buffer.cleared": S.READY,
        "call:append": S.READY,
        "call:commit": S.RESPONDING,
        "call:clear": S.READY,
        "call:finish": S.FINISHING,
    },
    S.RESPONDING: {
        **_STAY_RESPONDING,
        "input_text_buffer.committed": S.RESPONDING,
        "input_text_buffer.cleared": S.RESPONDING,
        "response.done": S.READY,
        "call:append": S.RESPONDING,
        "call:commit": S.RESPONDING,  # pipelining: the service may queue or reject it (§11 q6)
        "call:clear": S.RESPONDING,
        "call:finish": S.FINISHING,
    },
    S.FINISHING: {**_STAY_FINISHING, "input_text_buffer.committed": S.FINISHING, "session.finished": S.CLOSED},
    S.CLOSED: {},
    S.FAILED: {},
}
# server_commit: the service starts responses on its own, so an idle session may receive them too.
_SERVER_COMMIT_READY = {**_STAY_RESPONDING, "response.created": S.RESPONDING, "response.done": S.READY}


@dataclass(frozen=True, slots=True)
class Created:
    """``session.created`` arrived: the session can be configured."""

    session_id: str | None
    model: str | None


@dataclass(frozen=True, slots=True)
class Ready:
    """The service accepted the configuration; the session can speak."""

    session: p.SessionConfig


@dataclass(frozen=True, slots=True)
class Audio:
    """Decoded PCM16 audio of one utterance, in arrival order."""

    pcm: bytes
    utterance_id: str
    response_id: str


@dataclass(frozen=True, slots=True)
class ResponseComplete:
    """An utterance's response ended; ``status`` is ``completed``, ``cancelled``, ``incomplete`` or ``failed``."""

    utterance_id: str
    response_id: str
    status: str
    usage: p.Usage | None


@dataclass(frozen=True, slots=True)
class UtteranceFailed:
    """The service refused one commit (an error naming its ``event_id``); the session stays usable."""

    utterance_id: str
    error: ServiceError


@dataclass(frozen=True, slots=True)
class Finished:
    """``session.finished`` arrived: close the socket (the real service may not, §3.8)."""


Output = Created | Ready | Audio | ResponseComplete | UtteranceFailed | Finished


def _same(requested: object, echoed: object) -> bool:
    if requested is None or echoed is None:
        return True  # unset on our side, or not echoed by the service (§11 q2)
    if isinstance(requested, str) and isinstance(echoed, str):
        return requested.lower() == echoed.lower()  # language_type comes back lower-cased (§3.3)
    return requested == echoed


def _service_error(err: p.ErrorDetail) -> ServiceError:
    return ServiceError(
        f"The service rejected the request: {err.message or err.code or 'unknown error'}",
        error_type=err.type,
        code=err.code,
        param=err.param,
        event_id=err.event_id,
    )


class ClientSession:
    """Client-side state machine of one realtime session (several utterances in ``commit`` mode).

    Args:
        config: Optional ``session`` object; when given, :meth:`configure` is called with it as
            soon as ``session.created`` arrives (the one-utterance drivers' shortcut).

    Attributes:
        state: The current :class:`SessionState`.
        config: The configuration sent, once :meth:`configure` was called.
        session_id: The service's ``sess_…`` id, once known.
        model: The model the service says it serves (echo of ``?model=``), once known.
    """

    def __init__(self, config: p.SessionConfig | None = None) -> None:
        self.state = SessionState.CONNECTING
        self.config: p.SessionConfig | None = None
        self.session_id: str | None = None
        self.model: str | None = None
        self._auto_config = config
        self._sends: list[p.ClientEvent] = []
        self._pending: deque[str] = deque()  # committed utterances without response.done, in order
        self._response_id: str | None = None
        self._appended_since_commit = False

    # --- the table -----------------------------------------------------------------------------

    def _advance(self, step: str) -> SessionState:
        table = TRANSITIONS[self.state]
        if self.state is S.READY and self.server_commit and step in _SERVER_COMMIT_READY:
            table = _SERVER_COMMIT_READY
        target = table.get(step)
        if target is None:
            state = self.state
            if step.startswith("call:"):
                raise InvalidStateError(f"Cannot {step[5:]}: the session is {state.value}.")
            self.state = S.FAILED
            raise ProtocolViolationError(f"Unexpected {quote(step)} while the session is {state.value}.")
        if step == "response.done" and target is S.READY and self._pending:
            target = S.RESPONDING  # more commits are pending
        self.state = target
        return target

    # --- server events ------------------------------------------------------------------------

    def receive(self, event: p.ServerEvent | p.UnknownEvent) -> Sequence[Output]:
        """Feed one parsed server event; return what the driver must surface.

        Client events the session wants sent (``session.update`` after a configured creation, an
        ``input_text_buffer.clear`` after a refused commit) are queued for :meth:`take_sends`.

        Raises:
            ServiceError: The service sent an ``error`` event that does not name one pending commit.
            ProtocolViolationError: The event is not allowed in the current state, or the
                configuration echo contradicts what was requested.
        """
        if isinstance(event, p.UnknownEvent):
            logger.info("ignoring unknown server event %s", quote(event.type))
            return ()
        if isinstance(event, p.ErrorEvent):
            return self._error(event.error)
        self._advance(event.type)
        return self._handle(event)

    def _error(self, err: p.ErrorDetail) -> Sequence[Output]:
        error = _service_error(err)
        if (
            err.event_id is not None
            and err.event_id in self._pending
            and err.type != "server_error"
            and self.state in (S.READY, S.RESPONDING, S.FINISHING)
        ):
            # One commit was refused (e.g. too long, or a commit while responding under "reject"):
            # that utterance fails, the session goes on. The refused text may still be buffered
            # (the emulator keeps it), so clear it unless more text was appended since.
            self._pending.remove(err.event_id)
            if not self._appended_since_commit and self.state is not S.FINISHING:
                self._sends.append(p.InputTextBufferClear())
            if self.state is S.RESPONDING and not self._pending and self._response_id is None:
                self.state = S.READY
            return (UtteranceFailed(err.event_id, error),)
        self.state = S.FAILED
        raise error

    def _handle(self, event: p.ServerEvent) -> Sequence[Output]:
        if isinstance(event, p.SessionCreated):
            self.session_id = event.session.id
            self.model = event.session.model
            if self._auto_config is not None:
                self.configure(self._auto_config)
            return (Created(self.session_id, self.model),)
        if isinstance(event, p.SessionUpdated):
            assert self.config is not None
            for field in ("voice", "sample_rate", "mode", "response_format", "language_type"):
                if not _same(getattr(self.config, field), getattr(event.session, field)):
                    self.state = S.FAILED
                    raise ProtocolViolationError(
                        f"The service configured {field}={quote(getattr(event.session, field))}, "
                        f"not the requested {quote(getattr(self.config, field))}."
                    )
            self.session_id = event.session.id or self.session_id
            return (Ready(event.session),)
        if isinstance(event, p.ResponseCreated):
            self._response_id = event.response.id
            return ()
        if isinstance(event, p.ResponseAudioDelta):
            if self._response_id is None:
                self._response_id = event.response_id  # tolerate a missing response.created
            return (Audio(decode_chunk(event.delta), self._utterance(event.response_id), event.response_id),)
        if isinstance(event, p.ResponseDone):
            utterance = self._utterance(event.response.id)
            if self._pending and not self.server_commit:
                self._pending.popleft()
            self._response_id = None
            if self.state is S.RESPONDING and not self._pending:
                self.state = S.READY
            return (ResponseComplete(utterance, event.response.id, event.response.status, event.response.usage),)
        if isinstance(event, p.SessionFinished):
            return (Finished(),)
        return ()  # committed, cleared and the structural response.* events carry nothing to surface

    def _utterance(self, response_id: str) -> str:
        if self.server_commit or not self._pending:
            return response_id  # the service's own segment, or a response finishing the session
        return self._pending[0]

    # --- client calls ---------------------------------------------------------------------------

    @property
    def server_commit(self) -> bool:
        """Whether the service segments the text itself (``mode: server_commit``)."""
        config = self.config or self._auto_config
        return config is not None and config.mode == "server_commit"

    def configure(self, config: p.SessionConfig) -> None:
        """Queue ``session.update``; allowed once, after ``session.created`` (one voice for life).

        Raises:
            InvalidStateError: The session is not newly created.
        """
        self._advance("call:configure")
        self.config = config
        self._sends.append(p.SessionUpdate(session=config))

    def append(self, text: str) -> None:
        """Queue ``input_text_buffer.append``; in ``commit`` mode the text waits for :meth:`commit`."""
        self._advance("call:append")
        self._appended_since_commit = True
        self._sends.append(p.InputTextBufferAppend(text=text))

    def commit(self) -> str:
        """Queue ``input_text_buffer.commit``; return the new utterance's id (the commit's ``event_id``).

        Raises:
            InvalidStateError: The session is not configured, finishing or over, or in
                ``server_commit`` mode (the service commits itself).
        """
        if self.server_commit:
            raise InvalidStateError("Cannot commit: the session is in server_commit mode.")
        self._advance("call:commit")
        event = p.InputTextBufferCommit()
        self._pending.append(event.event_id)
        self._appended_since_commit = False
        self._sends.append(event)
        return event.event_id

    def clear(self) -> None:
        """Queue ``input_text_buffer.clear``: drop text appended and not yet committed."""
        self._advance("call:clear")
        self._appended_since_commit = False
        self._sends.append(p.InputTextBufferClear())

    def finish(self) -> None:
        """Queue ``session.finish``: end the session after the pending responses."""
        self._advance("call:finish")
        self._sends.append(p.SessionFinish())

    def speak(self, text: str) -> str | None:
        """Append ``text`` and, in ``commit`` mode, commit it; return the utterance id (``None`` in server_commit)."""
        self.append(text)
        return None if self.server_commit else self.commit()

    def connection_lost(self) -> None:
        """The socket closed: the session is over (CLOSED after ``session.finished``, else FAILED)."""
        if self.state is not S.CLOSED:
            self.state = S.FAILED

    def take_sends(self) -> list[p.ClientEvent]:
        """The client events queued since the last call, in the order they must be sent."""
        sends, self._sends = self._sends, []
        return sends

    @property
    def has_sends(self) -> bool:
        """Whether client events wait for :meth:`take_sends`."""
        return bool(self._sends)

    @property
    def pending(self) -> int:
        """Commits sent whose ``response.done`` has not arrived."""
        return len(self._pending)

    @property
    def responding(self) -> bool:
        """Whether a response is pending: committed and not done, or started by the service (server_commit)."""
        return bool(self._pending) or self._response_id is not None


_FINISH_REASONS: dict[str, FinishReason] = {"completed": "stop", "cancelled": "cancelled", "incomplete": "incomplete"}


def outcome_of(status: str | None, got_audio: bool) -> FinishReason:
    """The finish reason of an utterance that ended with response ``status``.

    Raises:
        ServiceError: The response failed.
        NoAudioError: It completed without audio.
        ProtocolViolationError: It ended with an unknown status.
    """
    status = status or "completed"
    if status == "failed":
        raise ServiceError("The service reported the response as failed.")
    if not got_audio:
        raise NoAudioError(
            f"The session completed without audio (response status {quote(status)}); check the text and the voice."
        )
    if status not in _FINISH_REASONS:
        raise ProtocolViolationError(f"Unknown response status {quote(status)}.")
    return _FINISH_REASONS[status]


class Utterance:
    """The policy of a one-utterance session, on top of :class:`ClientSession`.

    Configures the session when it is created, speaks ``text`` as soon as the configuration is
    accepted, finishes the session when the response completes, collects the audio, and turns the
    end of the session into an outcome. The official-SDK bridge uses it; the native client's
    :class:`~.connection.RealtimeConnection` uses the same core and the same :func:`outcome_of`,
    so they cannot drift. In ``server_commit`` mode it appends the text and finishes at once, as
    the SDK's sample does; the service's segments may make several responses, whose billed
    characters add up.

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
        return self.core.state is SessionState.CLOSED

    def receive(self, event: p.ServerEvent | p.UnknownEvent) -> tuple[list[p.ClientEvent], list[bytes]]:
        """Feed one server event; return the client events to send now and the audio to surface.

        Raises:
            ServiceError, ProtocolViolationError: As :meth:`ClientSession.receive`.
        """
        audio: list[bytes] = []
        for out in self.core.receive(event):
            if isinstance(out, Audio):
                self.got_audio = True
                audio.append(out.pcm)
            elif isinstance(out, Ready):
                self.core.speak(self.text)
                if self.core.server_commit:
                    self.core.finish()
            elif isinstance(out, UtteranceFailed):
                self.core.state = SessionState.FAILED
                raise out.error
            elif isinstance(out, ResponseComplete):
                if self._status in (None, "completed"):  # the first response that did not complete decides
                    self._status = out.status
                if out.usage is not None and out.usage.characters is not None:
                    self._characters = (self._characters or 0) + out.usage.characters
                if not self.core.server_commit and not self.core.responding:
                    self.core.finish()
        return self.core.take_sends(), audio

    def outcome(self, model: str) -> SynthesisOutcome:
        """The outcome once ``session.finished`` arrived.

        Args:
            model: The requested model, used when the service did not echo one.

        Raises:
            ServiceError, NoAudioError, ProtocolViolationError: As :func:`outcome_of`.
        """
        return SynthesisOutcome(
            finish_reason=outcome_of(self._status, self.got_audio),
            model=self.core.model or model,
            characters=self._characters,
            session_id=self.core.session_id,
        )

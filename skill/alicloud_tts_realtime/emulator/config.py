"""Every behaviour knob of the emulator, in one frozen value.

Defaults reproduce the *observed* real service (``dashscope-protocol.md`` §3, §9). Where the real
behaviour is unknown (§11), a knob selects between the plausible answers so that client tests can
cover each of them. Fault-injection knobs make the emulator fail on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NoReturn

from ..errors import ConfigurationError

__all__ = ["AudioMode", "CommitWhileResponding", "EmulatorConfig", "Fault", "parse_fault"]

AudioMode = Literal["auto", "speech", "signal"]
CommitWhileResponding = Literal["queue", "reject"]
IDLE_CLOSE_REASON = "idle timeout"


@dataclass(frozen=True)
class Fault:
    """A scripted fault for some connections and responses, so that "fail once, then succeed" is testable.

    ``conn`` and ``response`` are 1-based ordinals; ``None`` matches every one. Connections are
    numbered in the order their upgrade requests reach the realtime path (refused ones included),
    responses in the order they start on their connection.

    Attributes:
        conn: Which connection (``None``: every connection).
        response: Which response of the connection (``None``: every response); only the
            mid-response effects (``drop_after``, ``fail_after``, ``close_idle``) use it.
        drop_after: After this many audio deltas, drop the TCP connection without a close frame
            (1006). Deltas are counted in the matching response, or over the whole connection when
            ``response`` is ``None``.
        fail_after: After this many audio deltas (counted the same way), send an ``error`` of type
            ``server_error`` and close 1011.
        throttle: Accept the upgrade, then close 1011 "To many requests…" before any event (§3.8).
        reject_status: Refuse the upgrade with this HTTP status and a DashScope error body.
        close_idle: Once the matching response (any response when ``None``) has ended and no other
            response is queued, close 1000 "idle timeout" (a server closing a pooled socket).
    """

    conn: int | None = None
    response: int | None = None
    drop_after: int | None = None
    fail_after: int | None = None
    throttle: bool = False
    reject_status: int | None = None
    close_idle: bool = False

    def __post_init__(self) -> None:
        for name in ("conn", "response"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                _bad(f"a fault's {name} is a 1-based ordinal (>= 1) or None, not {value!r}")
        for name in ("drop_after", "fail_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                _bad(f"a fault's {name} must be >= 0 or None, not {value!r}")
        if self.reject_status is not None and not 400 <= self.reject_status <= 599:
            _bad(f"a fault's reject_status must be an HTTP error status (400-599), not {self.reject_status}")
        effects = (self.drop_after, self.fail_after, self.reject_status)
        if all(e is None for e in effects) and not (self.throttle or self.close_idle):
            _bad("a fault needs an effect: drop_after, fail_after, throttle, reject_status or close_idle")
        if self.response is not None and (self.throttle or self.reject_status is not None):
            _bad("throttle and reject_status act on a whole connection, before any response; drop response=")

    def matches(self, conn: int, response: int | None = None) -> bool:
        """Whether this fault applies to connection ``conn`` (and, when given, its ``response``)."""
        if self.conn is not None and self.conn != conn:
            return False
        return response is None or self.response is None or self.response == response


_FAULT_KEYS = {
    "conn": "conn",
    "response": "response",
    "drop-after": "drop_after",
    "fail-after": "fail_after",
    "reject": "reject_status",
    "throttle": "throttle",
    "close-idle": "close_idle",
}
_FLAG_KEYS = {"throttle", "close-idle"}


def parse_fault(spec: str) -> Fault:
    """Parse a CLI fault such as ``conn=1:drop-after=2``, ``conn=2:response=1:fail-after=0``,
    ``conn=1:reject=429``, ``conn=1:throttle`` or ``close-idle``.

    Raises:
        ConfigurationError: The text is not a fault; the message says which part is wrong.
    """
    fields: dict[str, int | bool] = {}
    shown = spec if len(spec) <= 80 else spec[:77] + "..."
    for part in spec.strip().split(":"):
        key, sep, value = part.strip().partition("=")
        key = key.strip().lower()
        if key not in _FAULT_KEYS:
            known = ", ".join(_FAULT_KEYS)
            _bad(f"fault {shown!r}: unknown part {part.strip()[:40]!r}; use {known} (e.g. conn=1:drop-after=2)")
        name = _FAULT_KEYS[key]
        if name in fields:
            _bad(f"fault {shown!r}: {key} is given twice")
        if key in _FLAG_KEYS:
            if sep and value.strip().lower() not in ("1", "true", "yes", "on"):
                _bad(f"fault {shown!r}: {key} takes no value")
            fields[name] = True
            continue
        try:
            fields[name] = int(value.strip())
        except ValueError:
            _bad(f"fault {shown!r}: {key} needs a whole number, as in {key}=1, not {value.strip()[:20]!r}")
    return Fault(**fields)  # type: ignore[arg-type]


# §3.6: the observed server_commit segmentation is unknown; these are the obvious sentence ends.
_SENTENCE_END = "。！？.!?"


@dataclass(frozen=True)
class EmulatorConfig:
    """Behaviour of an emulator instance.

    Attributes:
        api_key: The key clients must send as ``Authorization: Bearer <key>``; ``None`` accepts any
            non-empty key.
        latency_ms: Delay before the first audio delta of each response.
        rtf: Real-time factor of the pacing: a delta covering audio from ``t`` is sent ``t * rtf``
            after the first one (1.0 = as fast as it plays, 0 = as fast as possible).
        chunk_ms: Duration of the audio in each delta (the last one of a segment may be shorter).
        audio: ``speech`` = the offline eSpeak engine, ``signal`` = a synthetic speech-like signal,
            ``auto`` = speech when the offline extra is installed, else the signal.
        close_after_finished_ms: ``None`` waits for the client to close after ``session.finished``
            (observed, §3.8); a number closes with 1000 after that delay (documented).
        unknown_model: ``close`` = ``session.created`` then a silent close without audio (observed,
            §3.5 gotcha 1); ``error`` = an ``error`` event then close 1000 (emulator choice).
        error_shape: ``full`` error payloads carry ``type`` and ``param``; ``short`` omits them
            like the newer docs (§3.4).
        emit_committed_on_auto: Send ``input_text_buffer.committed`` on automatic server_commit
            segmentation (open question 5).
        server_commit_min_chars: In server_commit mode, text without sentence punctuation becomes a
            segment once this many characters are buffered.
        server_commit_punctuation: Characters that end a server_commit segment.
        echo_extra_fields: Echo ``speech_rate``, ``volume``, ``instructions``, ``enable_tn`` …
            in ``session.updated`` (open question 2); off = the observed minimal echo.
        commit_while_responding: What a commit gets while an earlier response is still running (open
            question 6): ``queue`` = its response runs after the current one (default); ``reject`` = an
            ``invalid_request_error`` naming the commit's ``event_id``, the commit's text is dropped
            (emulator choice: the failed commit consumed it) and the connection stays usable. In
            ``server_commit`` mode a commit that closes the open response is never rejected.
        max_commit_chars: A commit whose buffered text is longer (in code points) is answered with
            an ``invalid_request_error`` (``param`` ``text``), its buffer is cleared and the
            connection stays (open question 10: the real limit is unknown). ``None`` = no limit.
        idle_close_s: Close a connection with 1000 "idle timeout" once it has had no client event
            for this long and no response is running (idle time counts from the later of the last
            client event and the end of the last response). The real idle timeout is unknown
            (§11 q7); ``None`` (default) never closes an idle connection.
        max_connections: Beyond this many simultaneous WebSocket connections, refuse the upgrade
            with HTTP 429 ``Throttling.RateQuota`` (personal accounts get 3, §12). ``None`` = no cap.
        faults: Scripted faults for chosen connections and responses (:class:`Fault`).
        max_session_records: How many connection records the emulator keeps (the oldest go first).
        max_events_per_session: How many received events and sent event types each record keeps
            (the most recent ones).
        audio_tokens_per_second: Rate of ``output_tokens_details.audio_tokens`` for Qwen3 models
            (a hypothesis, §9); the legacy family uses the documented 50/s.
        handshake_delay_ms: Delay before answering the WebSocket upgrade (the Python SDK gives up
            after 5 s, §2.4).
        throttle: Accept the upgrade, then close 1011 "To many requests…" before any event (§3.8).
        fail_after_chunks: After this many deltas on a connection, send an ``error`` of type
            ``server_error`` and close 1011.
        drop_after_chunks: After this many deltas on a connection, drop the TCP connection without
            a close frame (the client sees 1006).
        reject_status: Refuse every upgrade with this HTTP status and a DashScope error body.

    The global fault knobs (``throttle``, ``fail_after_chunks``, ``drop_after_chunks``,
    ``reject_status``) act on every connection, as a :class:`Fault` with ``conn=None`` would.
    """

    api_key: str | None = "sk-emulator"
    latency_ms: float = 0
    rtf: float = 0
    chunk_ms: int = 100
    audio: AudioMode = "auto"
    close_after_finished_ms: float | None = None
    unknown_model: Literal["close", "error"] = "close"
    error_shape: Literal["full", "short"] = "full"
    emit_committed_on_auto: bool = False
    server_commit_min_chars: int = 40
    server_commit_punctuation: str = _SENTENCE_END
    echo_extra_fields: bool = False
    commit_while_responding: CommitWhileResponding = "queue"
    max_commit_chars: int | None = None
    idle_close_s: float | None = None
    max_connections: int | None = None
    faults: tuple[Fault, ...] = ()
    max_session_records: int = 64
    max_events_per_session: int = 256
    audio_tokens_per_second: float = 12.5
    handshake_delay_ms: float = 0
    throttle: bool = False
    fail_after_chunks: int | None = None
    drop_after_chunks: int | None = None
    reject_status: int | None = None

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            _bad("api_key must be a non-empty string, or None to accept any key")
        for name in ("latency_ms", "rtf", "handshake_delay_ms"):
            if getattr(self, name) < 0:
                _bad(f"{name} must be >= 0, not {getattr(self, name)}")
        if self.close_after_finished_ms is not None and self.close_after_finished_ms < 0:
            _bad("close_after_finished_ms must be >= 0 or None")
        if not 1 <= self.chunk_ms <= 10_000:
            _bad(f"chunk_ms must be between 1 and 10000, not {self.chunk_ms}")
        _choice("audio", self.audio, ("auto", "speech", "signal"))
        _choice("unknown_model", self.unknown_model, ("close", "error"))
        _choice("error_shape", self.error_shape, ("full", "short"))
        if self.server_commit_min_chars < 1:
            _bad("server_commit_min_chars must be >= 1")
        if self.audio_tokens_per_second <= 0:
            _bad("audio_tokens_per_second must be > 0")
        for name in ("fail_after_chunks", "drop_after_chunks"):
            value = getattr(self, name)
            if value is not None and value < 0:
                _bad(f"{name} must be >= 0 or None")
        if self.reject_status is not None and not 400 <= self.reject_status <= 599:
            _bad(f"reject_status must be an HTTP error status (400-599), not {self.reject_status}")
        _choice("commit_while_responding", self.commit_while_responding, ("queue", "reject"))
        for name in ("max_commit_chars", "max_connections"):
            value = getattr(self, name)
            if value is not None and value < 1:
                _bad(f"{name} must be >= 1 or None, not {value}")
        if self.idle_close_s is not None and not self.idle_close_s > 0:
            _bad(f"idle_close_s must be > 0 or None, not {self.idle_close_s}")
        for name in ("max_session_records", "max_events_per_session"):
            if getattr(self, name) < 1:
                _bad(f"{name} must be >= 1, not {getattr(self, name)}")
        if not isinstance(self.faults, tuple) or not all(isinstance(f, Fault) for f in self.faults):
            _bad("faults must be a tuple of Fault values")

    def all_faults(self) -> Iterator[Fault]:
        """The scripted faults, then the global fault knobs as faults on every connection."""
        yield from self.faults
        if self.throttle:
            yield Fault(throttle=True)
        if self.reject_status is not None:
            yield Fault(reject_status=self.reject_status)
        if self.drop_after_chunks is not None:
            yield Fault(drop_after=self.drop_after_chunks)
        if self.fail_after_chunks is not None:
            yield Fault(fail_after=self.fail_after_chunks)

    def faults_for(self, conn: int, response: int | None = None) -> list[Fault]:
        """The faults that apply to connection ``conn`` (and its ``response``), in order."""
        return [f for f in self.all_faults() if f.matches(conn, response)]


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _bad(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def _bad(message: str) -> NoReturn:
    raise ConfigurationError(f"Invalid emulator configuration: {message}.")

"""Every behaviour knob of the emulator, in one frozen value.

Defaults reproduce the *observed* real service (``dashscope-protocol.md`` §3, §9). Where the real
behaviour is unknown (§11), a knob selects between the plausible answers so that client tests can
cover each of them. Fault-injection knobs make the emulator fail on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigurationError

__all__ = ["AudioMode", "EmulatorConfig"]

AudioMode = Literal["auto", "speech", "signal"]

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
        queue_commits: A commit during an active response is queued (open question 6); off = it is
            rejected with an error and the text stays buffered.
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
    queue_commits: bool = True
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


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _bad(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def _bad(message: str) -> None:
    raise ConfigurationError(f"Invalid emulator configuration: {message}.")

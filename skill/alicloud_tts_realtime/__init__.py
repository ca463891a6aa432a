"""Qwen TTS Realtime (Alibaba Cloud Model Studio / DashScope) for agents and people.

Importing this package has no side effects: no settings are read, no clients or servers are
created. Start from :func:`synthesize` with a :class:`SpeechRequest`, or from the CLI
(``alicloud-tts-realtime speak``).
"""

from __future__ import annotations

from .errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionFailedError,
    EngineUnavailableError,
    InvalidInputError,
    InvalidRequestError,
    InvalidStateError,
    LocalError,
    NoAudioError,
    OutputError,
    ProtocolViolationError,
    RateLimitError,
    RemoteError,
    ResponseTimeoutError,
    ServiceError,
    TTSError,
)
from .models import AudioChunk, SpeechRequest, SpeechResponse, SynthesisOutcome, build_request
from .segment import Segmenter, split_text
from .settings import Settings, load_settings
from .speakable import to_speakable

__version__ = "0.1.0"

__all__ = [
    "AudioChunk",
    "AuthenticationError",
    "ConfigurationError",
    "ConnectionFailedError",
    "EngineUnavailableError",
    "InvalidInputError",
    "InvalidRequestError",
    "InvalidStateError",
    "LocalError",
    "NoAudioError",
    "OutputError",
    "ProtocolViolationError",
    "RateLimitError",
    "RemoteError",
    "ResponseTimeoutError",
    "Segmenter",
    "ServiceError",
    "Settings",
    "SpeechRequest",
    "SpeechResponse",
    "SynthesisOutcome",
    "TTSError",
    "__version__",
    "build_request",
    "load_settings",
    "split_text",
    "to_speakable",
]

"""The MCP tools' results: structured models, one-line summaries and one-sentence errors.

:class:`SpeechResult` and :class:`VoicesResult` are the structured content of ``tts_realtime`` and
``tts_voices`` (their JSON schemas are the tools' output schemas). The text content beside them
is written here too: :func:`speech_content` summarizes a synthesis in one line (never a second
copy of the audio) and links the audio file with its MIME type, and :func:`voices_text` lists the voices. Expected
failures become an ``isError`` result (:func:`error_result`) holding one sentence that says what
happened and what to do next (:func:`error_sentence`, :func:`argument_error`).

These are values and pure functions; :mod:`.mcp_server` decides when to return which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from mcp_types import CallToolResult, ContentBlock, ResourceLink, TextContent
from pydantic import BaseModel, Field, ValidationError

from .errors import (
    AuthenticationError,
    ConnectionFailedError,
    ProtocolViolationError,
    RateLimitError,
    ResponseTimeoutError,
    ServiceError,
    TTSError,
)
from .formats import DEFAULT_FORMAT, FORMATS
from .models import SpeechResponse
from .quoting import quote
from .settings import Settings

__all__ = [
    "ModelVoices",
    "SpeechResult",
    "StopResult",
    "StoppedPlayback",
    "VoicesResult",
    "argument_error",
    "error_result",
    "error_sentence",
    "speech_content",
    "stop_text",
    "voices_text",
]


class SpeechResult(SpeechResponse):
    """The structured result of ``tts_realtime``: the normalized response plus MCP delivery facts."""

    engine_reason: str = Field(description="Why this engine produced the audio, e.g. the automatic choice.")
    output_dir: str | None = Field(default=None, description="Absolute directory the audio file was saved in.")
    output_dir_fallback: str | None = Field(
        default=None,
        description="Set when the configured output directory was not writable and the user data "
        "directory was used instead; says which.",
    )
    playback: Literal["playing", "queued", "unavailable", "stopped"] | None = Field(
        default=None,
        description="With play: 'playing' (heard now, from its first chunk), 'queued' (after the playbacks "
        "ahead of it), 'unavailable' (no player, or it failed; see playback_detail) or 'stopped' (by tts_stop "
        "or another call's interrupt).",
    )
    player: str | None = Field(default=None, description="With play: the player, e.g. 'paplay' or 'sounddevice'.")
    playback_mode: Literal["stream", "file"] | None = Field(
        default=None,
        description="With play: 'stream' (fed as the audio arrives) or 'file' (the finished WAV is played).",
    )
    playback_detail: str | None = Field(default=None, description="Why nothing is heard, when playback failed.")


class StoppedPlayback(BaseModel):
    """One playback that tts_stop ended."""

    text: str = Field(description="The start of the text it was speaking.")
    state: str = Field(description="'playing' or 'queued' when it was stopped.")
    synthesis_cancelled: bool = Field(description="True when its synthesis was still running and was cancelled.")


class StopResult(BaseModel):
    """The structured result of ``tts_stop``."""

    stopped: list[StoppedPlayback] = Field(description="What was stopped, the one playing first, in queue order.")


class ModelVoices(BaseModel):
    """One model of the catalog."""

    model: str = Field(description="Model id, for the 'model' argument of tts_realtime.")
    family: str = Field(description="flash, instruct, voice-clone, voice-design or legacy.")
    stable: bool = Field(description="True for the family's undated alias, False for a dated snapshot.")
    takes_instruction: bool = Field(description="Whether the model accepts 'instruction'.")
    custom_voices_only: bool = Field(description="True when the model takes only cloned or designed voice ids.")
    sample_rates: list[int] = Field(description="Accepted sample rates in Hz.")
    voices: list[str] = Field(description="System voice names (case-sensitive).")


class VoicesResult(BaseModel):
    """The structured result of ``tts_voices``."""

    default_model: str = Field(description="Model used when none is given and there is no instruction.")
    default_instruct_model: str = Field(description="Model used when an instruction is given without a model.")
    language_types: list[str] = Field(description="Values accepted by 'language_type'.")
    engine: str = Field(description="The engine this server would use now, and why.")
    models: list[ModelVoices] = Field(description="Models and their voices.")


def error_result(sentence: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=sentence)], is_error=True)


# What to do next, for remote errors whose message says only what happened.
_ADVICE: tuple[tuple[type[TTSError], str], ...] = (
    (AuthenticationError, ""),  # its message already says which settings to check
    (RateLimitError, "Wait a few seconds, then call again."),
    (ConnectionFailedError, "Check the network and DASHSCOPE_REGION, then call again."),
    (ResponseTimeoutError, "Call again, or with shorter text."),
    (ProtocolViolationError, "Call again; if it keeps happening, the server can use the offline engine."),
)


def error_sentence(exc: TTSError, settings: Settings) -> str:
    message = str(exc).strip()
    advice = next((text for kind, text in _ADVICE if isinstance(exc, kind)), None)
    if advice is None and isinstance(exc, ServiceError):
        advice = "Call again in a moment." if exc.retryable else "Check the argument the message names."
    lowered = message.lower()
    if advice and not any(hint in lowered for hint in ("retry", "try again", "call again")):
        message = f"{message.rstrip('.')}. {advice}"
    if settings.api_key is not None:  # belt and braces: errors never hold the key, but make sure
        message = message.replace(settings.api_key.get_secret_value(), "***")
    return message


def argument_error(exc: ValidationError) -> str:
    """One sentence for arguments the tool's input schema refused, in build_request's style."""
    first = exc.errors()[0]
    name = ".".join(str(part) for part in first["loc"]) or "arguments"
    if first["type"] == "missing":
        return f"Missing required argument {quote(name)}; see the tool's input schema."
    message = first["msg"].removeprefix("Value error, ")
    return f"Invalid {name}: {message}."


def _summary(result: SpeechResult) -> str:
    first = f", first audio after {result.first_audio_ms} ms" if result.first_audio_ms is not None else ""
    where = (
        f"saved to {result.file_path}"
        if result.file_path
        else f"returned as {len(result.audio_base64_pcm_chunks)} base64 PCM chunks at {result.sample_rate} Hz"
    )
    chars = f" from {result.text_characters} characters" if result.text_characters is not None else ""
    text = (
        f"Spoke {result.duration_ms / 1000:.1f} s of audio{chars} with {result.voice} "
        f"({result.model}, {result.engine} engine{first}); {where}."
    )
    if result.finish_reason != "stop":
        text += f" The audio is incomplete (finish_reason {result.finish_reason})."
    if result.output_dir_fallback:
        text += f" {result.output_dir_fallback}"
    if result.playback:
        how = f" with {result.player} ({result.playback_mode})" if result.player else ""
        why = f": {result.playback_detail}" if result.playback_detail else ""
        text += f" Playback: {result.playback}{how}{why}."
    return text


def speech_content(result: SpeechResult) -> list[ContentBlock]:
    content: list[ContentBlock] = [TextContent(type="text", text=_summary(result))]
    if result.file_path:
        path = Path(result.file_path)
        audio_format = FORMATS.get(result.file_format or "wav", DEFAULT_FORMAT)
        content.append(
            ResourceLink(
                type="resource_link",
                uri=path.as_uri(),
                name=path.name,
                title="Synthesized speech",
                description=f"{audio_format.description}, {result.sample_rate} Hz, {result.duration_ms} ms",
                mime_type=audio_format.mime_type,
                size=path.stat().st_size,
            )
        )
    return content


def stop_text(result: StopResult) -> str:
    if not result.stopped:
        return "Nothing was playing or queued."
    parts = [
        f"{stopped.text!r} ({stopped.state}{', synthesis cancelled' if stopped.synthesis_cancelled else ''})"
        for stopped in result.stopped
    ]
    return f"Stopped {len(parts)} playback{'s' if len(parts) > 1 else ''}: {'; '.join(parts)}."


def voices_text(result: VoicesResult) -> str:
    lines = [f"Engine: {result.engine}."]
    for m in result.models:
        flags = " (takes instruction)" if m.takes_instruction else ""
        voices = ", ".join(m.voices) if m.voices else "custom voice ids only"
        lines.append(f"{m.model} [{m.family}]{flags}: {voices}")
    lines.append(f"language_type: {', '.join(result.language_types)}")
    return "\n".join(lines)

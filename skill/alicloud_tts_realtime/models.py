"""Value models of the normalized ``tts.realtime`` interface.

:class:`SpeechRequest` is what callers send (CLI, MCP tool, Python); :class:`SpeechResponse` is what
they get back. :class:`AudioChunk` and :class:`SynthesisOutcome` are what engines produce. These are
values only; behaviour lives in :mod:`.service` and :mod:`.engines`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import catalog
from .errors import InvalidRequestError
from .quoting import quote

__all__ = ["AudioChunk", "FinishReason", "SpeechRequest", "SpeechResponse", "SynthesisOutcome", "build_request"]

FinishReason = Literal["stop", "cancelled", "incomplete"]

MAX_TEXT_CHARS = 200_000  # the library's cap: long text is spoken segment by segment (.stream)
MAX_VOICE_CHARS = 128  # system names are short; cloned and designed voice ids are ~50 characters
_VOICE = re.compile(r"[A-Za-z0-9_.-]+(?: [A-Za-z0-9_.-]+)*")  # ASCII only: an id travels in logs and JSON


class SpeechRequest(BaseModel):
    """A request to speak ``text`` with ``voice``.

    Field validators check what can be checked alone; :meth:`resolved` checks the fields against
    the model (voice set, instruction support, sample rate) and fills the default model. Both run
    before any network call.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(
        description=(
            "The text to speak, of any length up to the cap: it is spoken sentence by sentence, "
            "so a long text starts as fast as a short one."
        ),
        min_length=1,
        max_length=MAX_TEXT_CHARS,
    )
    voice: str = Field(
        description=(
            "A system voice name, case-sensitive, e.g. 'Cherry' (female), 'Ethan' (male), 'Serena', "
            "'Chelsie'; dialect voices such as 'Dylan' (Beijing) or 'Rocky' (Cantonese) on the flash models."
        ),
        min_length=1,
    )
    instruction: str | None = Field(
        default=None,
        description=(
            "Optional natural-language style instruction (tone, pace, emotion), Chinese or English. "
            "Only the qwen3-tts-instruct-flash-realtime models take it; with no model set it selects one."
        ),
        max_length=4000,
    )
    sample_rate: int = Field(
        default=catalog.DEFAULT_SAMPLE_RATE,
        description=(
            "Output sample rate in Hz: 8000, 16000, 24000 (default) or 48000; "
            "the legacy qwen-tts-realtime models and the http engine give 24000 only."
        ),
    )
    model: str | None = Field(
        default=None,
        description=(
            "Realtime model id. Default 'qwen3-tts-flash-realtime', or "
            "'qwen3-tts-instruct-flash-realtime' when an instruction is given."
        ),
    )
    language_type: str | None = Field(
        default=None,
        description="Optional language hint: Auto, Chinese, English, German, Italian, Portuguese, "
        "Spanish, Japanese, Korean, French or Russian.",
    )

    @field_validator("text")
    @classmethod
    def _text_speakable(cls, value: str) -> str:
        # str.isalnum covers every script's letters (CJK ideographs are letters) and digits; text
        # without one ("\x00", zero-width spaces, a BOM, punctuation) would be billed for silence.
        if not any(char.isalnum() for char in value):
            raise ValueError(
                "text must contain something to speak: it has no letter, digit or CJK character "
                "(only whitespace, punctuation, symbols or invisible characters)"
            )
        return value

    @field_validator("voice")
    @classmethod
    def _voice_shape(cls, value: str) -> str:
        voice = value.strip()
        if len(voice) > MAX_VOICE_CHARS or not _VOICE.fullmatch(voice):
            raise ValueError(
                f"voice must be a voice name or id of 1 to {MAX_VOICE_CHARS} letters, digits, spaces, '-', '_' "
                f"or '.', not {quote(value)}"
            )
        return value

    @field_validator("sample_rate")
    @classmethod
    def _known_rate(cls, value: int) -> int:
        if value not in catalog.SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {', '.join(map(str, catalog.SAMPLE_RATES))}")
        return value

    def resolved(self) -> SpeechRequest:
        """Return a copy with the model chosen and every field checked against it.

        Raises:
            InvalidRequestError: A field does not fit the model; the message says what would.
        """
        info = catalog.resolve_model(self.model, self.instruction)
        try:
            voice = catalog.check_voice(info, self.voice)
        except InvalidRequestError:
            if self.model is not None or not self.instruction:
                raise
            flash = catalog.MODELS[catalog.DEFAULT_MODEL]
            if self.voice.strip().lower() not in {v.lower() for v in flash.voices}:
                raise
            raise InvalidRequestError(
                f"Voice {quote(self.voice.strip())} belongs to {flash.id!r}, which takes no instruction, and the "
                f"instruction selected {quote(info.id)}: drop the instruction, or pick one of its voices "
                f"({', '.join(info.voices[:6])}, …).",
                field="voice",
            ) from None
        if self.sample_rate not in info.sample_rates:
            rates = ", ".join(map(str, info.sample_rates))
            raise InvalidRequestError(
                f"Model {quote(info.id)} supports sample_rate {rates}, not {self.sample_rate}.", field="sample_rate"
            )
        language = catalog.check_language_type(self.language_type)
        instruction = self.instruction.strip() if self.instruction and self.instruction.strip() else None
        return self.model_copy(
            update={"model": info.id, "voice": voice, "language_type": language, "instruction": instruction}
        )


class SpeechResponse(BaseModel):
    """The result of a synthesis.

    ``audio_base64_pcm_chunks`` holds base64 PCM16 LE mono at ``sample_rate``, in arrival order; it
    is empty when only a file was requested. ``finish_reason`` is ``stop`` when the audio is complete.
    """

    model_config = ConfigDict(frozen=True)

    audio_base64_pcm_chunks: list[str] = Field(description="Base64 PCM16 LE mono chunks, in order.")
    sample_rate: int = Field(description="Sample rate of the audio in Hz.")
    finish_reason: FinishReason = Field(description="'stop' when the audio is complete.")
    model: str = Field(description="The model that produced the audio (or was emulated offline).")
    voice: str = Field(description="The voice used.")
    engine: str = Field(description="The engine that produced the audio: realtime, offline, http or sdk.")
    duration_ms: int = Field(description="Duration of the audio in milliseconds.")
    first_audio_ms: int | None = Field(description="Milliseconds from the start of the call to the first audio.")
    characters: int | None = Field(default=None, description="Billed characters reported by the service.")
    text_characters: int | None = Field(
        default=None, description="Characters of text actually sent (after Markdown was made speakable)."
    )
    session_id: str | None = Field(default=None, description="Service session id, for support requests.")
    file_path: str | None = Field(default=None, description="Absolute path of the saved audio file, if saved.")
    file_format: str | None = Field(
        default=None, description="Format of the saved file: wav, mp3, ogg (Opus), flac or pcm (raw s16le)."
    )
    reused_connection: bool = Field(
        default=False, description="Whether the audio came over a connection that was already open (no handshake)."
    )
    connect_ms: int = Field(default=0, description="Milliseconds spent opening a new connection (0 when reused).")
    segments: int = Field(
        default=1, description="How many segments (sentences, at most the segment maximum) were spoken."
    )


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A piece of PCM16 LE mono audio as an engine produced it.

    Attributes:
        pcm: Raw little-endian signed 16-bit samples; always an even number of bytes.
        sample_rate: Samples per second.
    """

    pcm: bytes
    sample_rate: int

    @property
    def duration_ms(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate * 1000


@dataclass(frozen=True, slots=True)
class SynthesisOutcome:
    """What an engine knows once its audio is complete.

    Attributes:
        finish_reason: ``stop`` when the engine delivered all audio.
        model: The model id that produced the audio.
        characters: Billed characters, when the service reports them.
        session_id: Service session id, when there is one.
        engine: The engine that produced the audio, when a composite engine chose among several.
        reused_connection: Whether the engine used a connection that was already open.
        connect_ms: Milliseconds spent opening a new connection (0 when reused, or no connection).
    """

    finish_reason: FinishReason
    model: str
    characters: int | None = None
    session_id: str | None = None
    engine: str | None = None
    reused_connection: bool = False
    connect_ms: int = 0


def build_request(**fields: object) -> SpeechRequest:
    """Build and resolve a :class:`SpeechRequest`, turning pydantic errors into ours.

    Raises:
        InvalidRequestError: One sentence per invalid field, naming the field.
    """
    from pydantic import ValidationError

    try:
        request = SpeechRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidRequestError(f"Invalid {field or 'request'}: {message}.", field=field) from None
    return request.resolved()

"""PCM helpers: base64 chunks, durations and WAV encoding (stdlib only).

All audio inside the package is PCM16 little-endian mono; these helpers convert at the edges.
"""

from __future__ import annotations

import base64
import binascii
import io
import wave
from collections.abc import Iterable

from .errors import ProtocolViolationError

__all__ = ["decode_chunk", "duration_ms", "encode_chunk", "wav_bytes"]


def encode_chunk(pcm: bytes) -> str:
    """Base64-encode raw PCM for JSON transport."""
    return base64.b64encode(pcm).decode("ascii")


def decode_chunk(data: str) -> bytes:
    """Decode a base64 PCM16 chunk from the service.

    Raises:
        ProtocolViolationError: The data is not base64, or not a whole number of 16-bit samples.
    """
    try:
        pcm = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolViolationError("Received an audio delta that is not valid base64.") from None
    if len(pcm) % 2:
        # §3.7: every observed delta holds whole samples; an odd length would shift all later audio.
        raise ProtocolViolationError(f"Received an audio delta of {len(pcm)} bytes, not whole 16-bit samples.")
    return pcm


def duration_ms(n_bytes: int, sample_rate: int) -> float:
    """Duration of ``n_bytes`` of PCM16 mono at ``sample_rate``, in milliseconds."""
    return n_bytes / 2 / sample_rate * 1000


def wav_bytes(chunks: Iterable[bytes], sample_rate: int) -> bytes:
    """Encode PCM16 mono chunks as a complete WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        for chunk in chunks:
            wav.writeframes(chunk)
    return buffer.getvalue()

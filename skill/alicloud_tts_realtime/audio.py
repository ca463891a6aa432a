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

__all__ = ["decode_chunk", "duration_ms", "encode_chunk", "encode_kept_chunk", "wav_bytes"]

# PCM bytes per piece in encode_kept_chunk: 456 base64 characters, so each piece's bytes (489) and
# str (505) stay within CPython's small-object allocator (512 bytes), off the C heap.
_KEPT_PIECE = 342


def encode_chunk(pcm: bytes) -> str:
    """Base64-encode raw PCM for JSON transport."""
    return base64.b64encode(pcm).decode("ascii")


def encode_kept_chunk(pcm: bytes) -> str:
    """Base64-encode PCM into a string that is kept for long (the response's chunks); same value.

    :func:`encode_chunk` makes a temporary bytes object as large as its result, and when thousands
    of results are kept, glibc's heap is left with a hole of that size between every few of them:
    0.3x the PCM on a ten-minute result (``benchmarks/memory.py``). Encoding small pieces and
    joining them allocates only the kept string on the C heap. It costs about 3.5 µs more per
    100 ms chunk.
    """
    view = memoryview(pcm)
    pieces = range(0, len(view), _KEPT_PIECE)
    return "".join([binascii.b2a_base64(view[i : i + _KEPT_PIECE], newline=False).decode("ascii") for i in pieces])


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

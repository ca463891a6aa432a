"""Features of PCM16 audio that tell speech from silence, noise and test tones.

Tests use these to check that audio "looks like speech" rather than merely that bytes exist:
loud enough, voiced (periodic at a voice pitch) in many frames, and varying over time as syllables
do. :func:`assert_speech_like` bundles the usual checks; the helpers are there for finer asserts.
Everything works on 30 ms frames at any sample rate from 8000 Hz up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SpeechFeatures",
    "assert_speech_like",
    "duration_s",
    "frame_pitches",
    "frame_rms",
    "mean_pitch",
    "rms_dbfs",
    "samples",
    "speech_features",
    "voiced_fraction",
]

FRAME_MS = 30
PITCH_RANGE_HZ = (70.0, 400.0)  # covers adult male to child voices
VOICING_THRESHOLD = 0.6  # normalized autocorrelation peak above which a frame counts as periodic
SILENCE_DBFS = -50.0  # frames quieter than this are not analysed for pitch


def samples(pcm: bytes | Iterable[bytes]) -> np.ndarray:
    """Decode PCM16 LE mono (bytes or an iterable of chunks) to float64 in [-1, 1)."""
    data = pcm if isinstance(pcm, bytes | bytearray) else b"".join(pcm)
    assert len(data) % 2 == 0, f"PCM16 must have an even byte length, got {len(data)}"
    return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0


def duration_s(pcm: bytes | Iterable[bytes], sample_rate: int) -> float:
    """Duration in seconds of PCM16 mono audio."""
    return len(samples(pcm)) / sample_rate


def rms_dbfs(x: np.ndarray) -> float:
    """Root-mean-square level relative to full scale, in dB (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0
    return 20 * float(np.log10(rms)) if rms > 0 else float("-inf")


def _frames(x: np.ndarray, sample_rate: int) -> np.ndarray:
    size = sample_rate * FRAME_MS // 1000
    count = len(x) // size
    return x[: count * size].reshape(count, size)


def frame_rms(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """RMS of each 30 ms frame (linear)."""
    rms: np.ndarray = np.sqrt(np.mean(np.square(_frames(x, sample_rate)), axis=1))
    return rms


def frame_pitches(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Autocorrelation pitch of each 30 ms frame in Hz; NaN where the frame is silent or unvoiced.

    The pitch is the lag of the highest normalized autocorrelation peak in :data:`PITCH_RANGE_HZ`,
    preferring the shortest lag within 10% of that peak so that a doubled period (an octave error)
    does not halve the estimate.
    """
    frames = _frames(x, sample_rate)
    lo = int(sample_rate / PITCH_RANGE_HZ[1])
    hi = min(int(sample_rate / PITCH_RANGE_HZ[0]), frames.shape[1] - 1)
    pitches = np.full(len(frames), np.nan)
    for i, frame in enumerate(frames):
        frame = frame - frame.mean()
        if rms_dbfs(frame) < SILENCE_DBFS:
            continue
        n = len(frame)
        spectrum = np.fft.rfft(frame, 2 * n)
        corr = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
        # Unbiased normalization: at lag k only n-k products are summed.
        norm = corr[lo : hi + 1] / corr[0] * n / (n - np.arange(lo, hi + 1))
        best = float(norm.max())
        if best < VOICING_THRESHOLD:
            continue
        peaks = [k for k in range(1, len(norm) - 1) if norm[k] >= norm[k - 1] and norm[k] >= norm[k + 1]]
        lag = next((k for k in peaks if norm[k] >= 0.9 * best), int(norm.argmax())) + lo
        pitches[i] = sample_rate / lag
    return pitches


def voiced_fraction(x: np.ndarray, sample_rate: int) -> float:
    """Fraction of all 30 ms frames that are voiced (periodic with a pitch in range)."""
    pitches = frame_pitches(x, sample_rate)
    return float(np.mean(~np.isnan(pitches))) if len(pitches) else 0.0


def mean_pitch(x: np.ndarray, sample_rate: int) -> float:
    """Median pitch of the voiced frames in Hz (the median resists stray octave errors)."""
    pitches = frame_pitches(x, sample_rate)
    voiced = pitches[~np.isnan(pitches)]
    return float(np.median(voiced)) if len(voiced) else float("nan")


@dataclass(frozen=True)
class SpeechFeatures:
    """Summary features of a clip.

    Attributes:
        duration_s: Length in seconds.
        rms_dbfs: Overall level in dBFS.
        voiced_fraction: Fraction of 30 ms frames that are voiced.
        mean_pitch_hz: Median pitch of voiced frames.
        pitch_spread_hz: Standard deviation of the voiced pitch (intonation; ~0 for a tone).
        level_variation: Coefficient of variation of frame RMS (syllables; ~0 for a steady tone).
    """

    duration_s: float
    rms_dbfs: float
    voiced_fraction: float
    mean_pitch_hz: float
    pitch_spread_hz: float
    level_variation: float


def speech_features(pcm: bytes | Iterable[bytes], sample_rate: int) -> SpeechFeatures:
    """Compute :class:`SpeechFeatures` of PCM16 mono audio."""
    x = samples(pcm)
    pitches = frame_pitches(x, sample_rate)
    voiced = pitches[~np.isnan(pitches)]
    levels = frame_rms(x, sample_rate)
    return SpeechFeatures(
        duration_s=len(x) / sample_rate,
        rms_dbfs=rms_dbfs(x),
        voiced_fraction=float(np.mean(~np.isnan(pitches))) if len(pitches) else 0.0,
        mean_pitch_hz=float(np.median(voiced)) if len(voiced) else float("nan"),
        pitch_spread_hz=float(np.std(voiced)) if len(voiced) else 0.0,
        level_variation=float(np.std(levels) / np.mean(levels)) if len(levels) and np.mean(levels) > 0 else 0.0,
    )


def assert_speech_like(
    pcm: bytes | Iterable[bytes], sample_rate: int, *, min_duration_s: float = 0.3
) -> SpeechFeatures:
    """Assert that audio looks like speech, and return its features for further checks.

    Speech is audible (above -35 dBFS overall), voiced in at least a fifth of its frames, has
    intonation (voiced pitch spread of a few Hz) and syllables (frame level varies by over 30%):
    silence, white noise and a steady tone each fail at least one of these.
    """
    features = speech_features(pcm, sample_rate)
    assert features.duration_s >= min_duration_s, features
    assert features.rms_dbfs > -35, features
    assert features.voiced_fraction > 0.2, features
    assert PITCH_RANGE_HZ[0] <= features.mean_pitch_hz <= PITCH_RANGE_HZ[1], features
    assert features.pitch_spread_hz > 3, features
    assert features.level_variation > 0.3, features
    return features

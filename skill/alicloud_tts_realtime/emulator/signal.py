"""A deterministic speech-like PCM16 signal, used when the offline speech engine is not installed.

It is not speech, but it has the properties clients and listeners notice: its duration follows the
text (~70 ms per Latin character, ~220 ms per CJK ideograph, pauses at punctuation), its loudness
rises and falls at a syllable rate of 4–5 Hz, and each syllable is a voiced harmonic sound with a
vowel-like spectrum, a short consonant noise onset and a slowly drifting pitch (higher for female
voices). The same inputs always give the same bytes: randomness is seeded from the text.

Pure Python: each vowel is one period of a harmonic waveform in a wavetable, read at the pitch
frequency, so a sample costs a table lookup and a multiply.
"""

from __future__ import annotations

import math
import random
import sys
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["SpeechSignal"]

_TABLE_SIZE = 1024
_ENV_SIZE = 256
_PITCH_STEP = 64  # samples between pitch updates
# Rough formants (Hz) of the vowels a, e, i, o, u; female voices shift them up ~15 %.
_FORMANTS: tuple[tuple[float, float, float], ...] = (
    (730, 1090, 2440),
    (530, 1840, 2480),
    (270, 2290, 3010),
    (570, 840, 2410),
    (300, 870, 2240),
)
_BANDWIDTHS = (90.0, 110.0, 170.0)
_SENTENCE_END = frozenset("。！？.!?…")
_CLAUSE_END = frozenset(",;:，、；：—")


@dataclass(frozen=True, slots=True)
class _Unit:
    """A syllable (``vowel >= 0``) or a pause (``vowel == -1``) of ``seconds``."""

    seconds: float
    vowel: int = -1
    pitch: float = 1.0
    onset: bool = False


def _char_seconds(ch: str) -> float | None:
    """Speaking time of one character that is part of a word, or ``None`` if it is not."""
    code = ord(ch)
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF or code >= 0x20000:
        return 0.22  # a CJK ideograph is one syllable
    if 0xAC00 <= code <= 0xD7A3:
        return 0.20  # a Hangul syllable block
    if 0x3040 <= code <= 0x30FF:
        return 0.12  # kana: one mora
    if ch.isalnum() or ch in "'-":
        return 0.07
    return None


def _units(text: str, rng: random.Random) -> list[_Unit]:
    units: list[_Unit] = []
    word = 0.0  # seconds of the word being collected

    def syllables(seconds: float, count: int) -> None:
        for _ in range(count):
            units.append(
                _Unit(seconds / count, rng.randrange(len(_FORMANTS)), rng.uniform(0.93, 1.07), rng.random() < 0.7)
            )

    for ch in text:
        seconds = _char_seconds(ch)
        if seconds is not None and seconds >= 0.2:
            if word:
                syllables(word, max(1, round(word / 0.2)))
                word = 0.0
            syllables(seconds, 1)
            continue
        if seconds is not None:
            word += seconds
            continue
        if word:
            syllables(word, max(1, round(word / 0.2)))
            word = 0.0
        if ch in _SENTENCE_END:
            units.append(_Unit(0.30))
        elif ch in _CLAUSE_END:
            units.append(_Unit(0.15))
        elif ch.isspace():
            units.append(_Unit(0.04))
        else:
            units.append(_Unit(0.05))  # other symbols: a short break
    if word:
        syllables(word, max(1, round(word / 0.2)))
    if not any(u.vowel >= 0 for u in units):
        syllables(0.15, 1)  # never pure silence, even for "..." or whitespace
    return units


@lru_cache(maxsize=64)
def _wavetable(vowel: int, female: bool, harmonics: int) -> array[float]:
    """One period of a harmonic source shaped by the vowel's formants, peak-normalized."""
    f0 = 210.0 if female else 115.0
    scale = 1.15 if female else 1.0
    formants = [f * scale for f in _FORMANTS[vowel]]
    amps = []
    for k in range(1, harmonics + 1):
        freq = k * f0
        gain = 0.04 + sum(1.0 / (1.0 + ((freq - f) / b) ** 2) for f, b in zip(formants, _BANDWIDTHS, strict=True))
        amps.append(gain / k**0.8)
    table = array("f", [0.0]) * _TABLE_SIZE
    for n in range(_TABLE_SIZE):
        x = 2 * math.pi * n / _TABLE_SIZE
        table[n] = sum(a * math.sin(k * x + 0.5 * k * k) for k, a in enumerate(amps, 1))
    peak = max(abs(v) for v in table) or 1.0
    for n in range(_TABLE_SIZE):
        table[n] /= peak
    return table


def _envelope() -> array[float]:
    """Loudness over one syllable: quick rise, slight decay, smooth fall to zero."""
    env = array("f", [0.0]) * _ENV_SIZE
    for n in range(_ENV_SIZE):
        x = n / (_ENV_SIZE - 1)
        if x < 0.2:
            value = 0.5 - 0.5 * math.cos(math.pi * x / 0.2)
        elif x < 0.7:
            value = 1.0 - 0.25 * (x - 0.2) / 0.5
        else:
            value = 0.75 * (0.5 + 0.5 * math.cos(math.pi * (x - 0.7) / 0.3))
        env[n] = value
    return env


_ENV = _envelope()


class SpeechSignal:
    """The signal for one text, generated incrementally.

    Args:
        text: The text being "spoken"; it sets the duration and seeds the randomness.
        sample_rate: Output rate in Hz.
        female: Higher pitch and formants.
        speech_rate: Speed factor (``session.speech_rate``); 2.0 halves the duration.
        pitch_rate: Pitch factor (``session.pitch_rate``).
        volume: Loudness 0–100 (``session.volume``); 50 peaks at about -7 dBFS.
    """

    def __init__(
        self,
        text: str,
        sample_rate: int,
        *,
        female: bool = True,
        speech_rate: float = 1.0,
        pitch_rate: float = 1.0,
        volume: float = 50,
    ) -> None:
        self.sample_rate = sample_rate
        self._female = female
        self._pitch = (210.0 if female else 115.0) * pitch_rate
        self._amplitude = 32767 * min(0.9, 0.45 * volume / 50)
        self._seed = zlib.crc32(f"{text}\0{female}".encode())
        self._units = _units(text, random.Random(self._seed))
        self._samples = [max(1, round(u.seconds / speech_rate * sample_rate)) for u in self._units]

    @property
    def total_samples(self) -> int:
        return sum(self._samples)

    @property
    def duration_ms(self) -> float:
        return self.total_samples / self.sample_rate * 1000

    def blocks(self, block_samples: int = 480) -> Iterator[bytes]:
        """Yield the PCM16 LE mono signal in blocks of at most ``block_samples`` samples.

        The bytes do not depend on ``block_samples``: each syllable is rendered whole, then sliced.
        """
        rng = random.Random(self._seed ^ 0x5EED)
        rate = self.sample_rate
        harmonics = max(1, min(40, int(0.45 * rate / (self._pitch * 1.2))))
        phase = 0.0
        elapsed = 0  # samples since the start, for the slow pitch drift
        for unit, count in zip(self._units, self._samples, strict=True):
            if unit.vowel < 0:
                pcm = bytes(2 * count)
            else:
                pcm, phase = self._syllable(unit, count, elapsed, phase, harmonics, rng)
            elapsed += count
            for start in range(0, len(pcm), 2 * block_samples):
                yield pcm[start : start + 2 * block_samples]

    def _syllable(
        self, unit: _Unit, count: int, elapsed: int, phase: float, harmonics: int, rng: random.Random
    ) -> tuple[bytes, float]:
        rate = self.sample_rate
        table = _wavetable(unit.vowel, self._female, harmonics)
        onset = int(0.025 * rate) if unit.onset else 0
        noise_prev = 0.0
        out = array("h", bytes(2 * count))
        for start in range(0, count, _PITCH_STEP):
            t = (elapsed + start) / rate
            # Slow intonation drift, a slight fall within the syllable, and 5 Hz vibrato.
            f0 = self._pitch * unit.pitch * (1 + 0.08 * math.sin(2 * math.pi * 0.35 * t))
            f0 *= (1 - 0.06 * start / count) * (1 + 0.01 * math.sin(2 * math.pi * 5 * t))
            step = f0 / rate * _TABLE_SIZE
            for i in range(start, min(count, start + _PITCH_STEP)):
                phase = (phase + step) % _TABLE_SIZE
                value = table[int(phase)] * _ENV[i * (_ENV_SIZE - 1) // count]
                if i < onset:  # a consonant: high-passed noise fading into the vowel
                    noise = rng.uniform(-1.0, 1.0)
                    value = value * i / onset + 0.3 * (noise - noise_prev) * (1 - i / onset)
                    noise_prev = noise
                out[i] = int(value * self._amplitude)
        return _le(out), phase


def _le(samples: array[int]) -> bytes:
    if sys.byteorder == "big":  # PCM16 on the wire is little-endian
        samples.byteswap()
    return samples.tobytes()

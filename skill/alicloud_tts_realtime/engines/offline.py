"""The offline engine: real, intelligible speech from eSpeak NG, with no key and no network.

This is the default when no DashScope key is configured, and the emulator's audio source. eSpeak NG
is a formant synthesizer: robotic but clear, small, and hundreds of times faster than real time.
It comes with the optional ``offline`` extra (``pip install 'alicloud-ai-audio-tts-realtime[offline]'``):
the ``espeakng-loader`` wheel ships ``libespeak-ng`` and its voice data, loaded here through
:mod:`ctypes`, and ``soxr`` resamples its 22050 Hz output. eSpeak NG is licensed GPL-3.0, which is
why it is an optional extra and not a dependency; nothing imports it until this engine synthesizes.

Strategy: eSpeak runs in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode in a worker thread. Its per-buffer
callback (100 ms buffers) feeds a streaming resampler and hands 100 ms chunks to the event loop, so
the first chunk is yielded while the rest is still being synthesized. Closing the generator sets a
flag that makes the callback return 1, which aborts ``espeak_Synth`` at the next buffer. The engine
runs on asyncio (directly or as anyio's backend), like the rest of the package.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import importlib
import math
import os
import re
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from .. import catalog
from ..errors import EngineUnavailableError, TTSError
from ..models import AudioChunk, SpeechRequest, SynthesisOutcome
from .base import Capabilities, Engine, StreamItem

__all__ = ["INSTALL_HINT", "MODEL", "OfflineEngine", "espeak_voice"]

INSTALL_HINT = "pip install 'alicloud-ai-audio-tts-realtime[offline]'"
MODEL = "espeak-ng"  # SynthesisOutcome.model
RATE_WPM = 170  # a little under eSpeak's 175 default: formant speech is easier to follow slowly
BUFFER_MS = 100  # espeak_Initialize's buflength (in ms) and the size of the chunks we yield

_AUDIO_OUTPUT_SYNCHRONOUS = 2  # this and the following constants come from speak_lib.h
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() when the data is missing
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_EE_OK = 0

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

# Scripts that decide the language by themselves, checked in order: kana before ideographs because
# Japanese mixes both (eSpeak's ja reads kana only; it announces kanji as "Chinese letter").
# Every voice named here and below exists in espeakng-loader's data (tested).
_SCRIPT_VOICES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[\u3040-\u30ff]"), "ja"),
    (re.compile(r"[\u1100-\u11ff\uac00-\ud7af]"), "ko"),
    (re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"), "cmn"),
    (re.compile(r"[\u0400-\u04ff]"), "ru"),
)
# For Latin-script text, the request's language_type picks among these; otherwise English.
_LANGUAGE_VOICES: dict[str, str] = {
    "German": "de", "Italian": "it", "Portuguese": "pt", "Spanish": "es", "French": "fr",
}  # fmt: skip


def espeak_voice(text: str, voice: str, language_type: str | None = None) -> str:
    """Return the eSpeak voice that speaks ``text`` for the Qwen voice ``voice``, e.g. ``"cmn+f3"``.

    The script of ``text`` decides first (kana → ja, Hangul → ko, CJK → cmn, Cyrillic → ru), since
    another language's voice would skip its characters; Latin text follows ``language_type``, else
    en-us. The variant follows the voice's gender: Cherry sounds female (+f3), Ethan male (+m3).
    """
    language = next((name for pattern, name in _SCRIPT_VOICES if pattern.search(text)), None)
    language = language or _LANGUAGE_VOICES.get(language_type or "", "en-us")
    return f"{language}+{'f3' if catalog.female_voice(voice) else 'm3'}"


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EngineUnavailableError(f"The offline engine needs {module}; install it with: {INSTALL_HINT}") from None


@dataclass(frozen=True)
class _Library:
    """The loaded, initialized eSpeak NG library and the lock that serializes every use of it."""

    cdll: Any
    sample_rate: int
    lock: threading.Lock = field(default_factory=threading.Lock)


@functools.cache
def _library() -> _Library:
    """Load and initialize eSpeak NG, once per process.

    This cache is the module's one piece of global state, on purpose: libespeak-ng keeps its voice,
    parameters and callback in C globals, so it is initialized once per process and serves one
    synthesis at a time, whatever the number of engines and event loops. Every use takes the lock.

    Raises:
        EngineUnavailableError: The extra is not installed or the library or its data cannot load.
    """
    loader = _require("espeakng_loader")
    try:  # the one place where ctypes and espeakng-loader errors become ours
        cdll = ctypes.CDLL(loader.get_library_path())
        cdll.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        cdll.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        cdll.espeak_SetSynthCallback.restype = None
        cdll.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        cdll.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        cdll.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int]
        cdll.espeak_Synth.argtypes += [ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        # The library has its build directory baked in as the data path; give it the wheel's own.
        data = loader.get_data_path()
        rate = cdll.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, os.fsencode(data), _INITIALIZE_DONT_EXIT)
    except (OSError, AttributeError, RuntimeError) as exc:  # no .so, a missing symbol, no data dir
        raise EngineUnavailableError(f"eSpeak NG could not be loaded ({exc}); reinstall it: {INSTALL_HINT}") from exc
    if rate <= 0:
        raise EngineUnavailableError(f"eSpeak NG could not read its data in {data}; reinstall: {INSTALL_HINT}")
    return _Library(cdll, rate)


@dataclass
class _Job:
    """One synthesis, run by :meth:`run` in a worker thread; ``emit`` hands PCM to the event loop."""

    text: str
    voice: str
    sample_rate: int
    emit: Callable[[bytes], None]
    abort: threading.Event = field(default_factory=threading.Event)

    def run(self, lib: _Library) -> None:
        """Synthesize into ``emit``; return early, without error, once ``abort`` is set.

        Raises:
            EngineUnavailableError: eSpeak does not have the voice (broken data).
            TTSError: eSpeak failed, or resampling or handing over a chunk did.
        """
        np, soxr = _require("numpy"), _require("soxr")
        # A streaming resampler keeps its filter state across buffers, so the joins do not click.
        resampler = soxr.ResampleStream(lib.sample_rate, self.sample_rate, 1, dtype="int16")
        chunk_bytes = self.sample_rate * BUFFER_MS // 1000 * 2
        pending = bytearray()
        failures: list[Exception] = []

        def push(samples: Any, last: bool) -> None:
            pending.extend(resampler.resample_chunk(samples, last=last).tobytes())
            while len(pending) >= chunk_bytes or (last and pending):
                self.emit(bytes(pending[:chunk_bytes]))
                del pending[:chunk_bytes]

        def on_buffer(wav: Any, count: int, _events: Any) -> int:
            # Called by espeak_Synth, in this thread, for each buffer; returning 1 aborts synthesis.
            if self.abort.is_set():
                return 1
            if count > 0 and wav:
                try:
                    push(np.frombuffer(ctypes.string_at(wav, count * 2), dtype=np.int16), last=False)
                except Exception as exc:  # an exception must not unwind through the C frames
                    failures.append(exc)
                    return 1
            return 0

        callback = _SynthCallback(on_buffer)  # this reference keeps it alive while C holds it
        text = self.text.replace("\0", " ").encode("utf-8", "replace") + b"\0"
        # Poll rather than block, so a consumer that gives up while another synthesis holds the
        # library does not keep this thread (and its own aclose) waiting for that synthesis.
        while not lib.lock.acquire(timeout=0.05):
            if self.abort.is_set():
                return
        try:
            lib.cdll.espeak_SetSynthCallback(callback)
            if lib.cdll.espeak_SetVoiceByName(self.voice.encode()) != _EE_OK:
                raise EngineUnavailableError(f"eSpeak NG has no voice {self.voice!r}; reinstall: {INSTALL_HINT}")
            lib.cdll.espeak_SetParameter(_PARAM_RATE, RATE_WPM, 0)
            status = lib.cdll.espeak_Synth(text, len(text), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        finally:
            lib.lock.release()
        if self.abort.is_set():
            return
        if failures:
            raise TTSError(f"Offline synthesis failed: {failures[0]!r}.") from failures[0]
        if status != _EE_OK:
            raise TTSError(f"eSpeak NG failed to synthesize (error {status}).")
        push(np.zeros(0, dtype=np.int16), last=True)  # flush the resampler's tail


class OfflineEngine(Engine):
    """Speak with eSpeak NG, locally; ``request.instruction`` and ``request.model`` are ignored.

    Takes unresolved requests too (it reads ``text``, ``voice``, ``sample_rate``, ``language_type``):
    the emulator reuses it as its audio source.
    """

    name = "offline"
    capabilities = Capabilities(remote=False, streaming=True, instructions=False)

    def __init__(self) -> None:
        # One worker thread per engine: a second concurrent stream waits in the event loop, not in
        # a pooled thread blocked on the library lock.
        self._limiter = anyio.CapacityLimiter(1)

    async def stream(self, request: SpeechRequest) -> AsyncIterator[StreamItem]:
        """Yield ~100 ms :class:`AudioChunk` values at ``request.sample_rate``, then one outcome.

        Raises:
            EngineUnavailableError: The ``offline`` extra is missing or eSpeak NG cannot load.
            TTSError: Synthesis failed.
        """
        lib = _library()
        _require("numpy"), _require("soxr")  # fail here, before a thread starts, if the extra is partial
        # Unbounded: eSpeak outruns any consumer, and finishing early frees the library for others.
        send, receive = anyio.create_memory_object_stream[AudioChunk](math.inf)

        def emit(pcm: bytes) -> None:  # in the worker thread; raises once the stream below is closed
            anyio.from_thread.run_sync(send.send_nowait, AudioChunk(pcm, request.sample_rate))

        voice = espeak_voice(request.text, request.voice, request.language_type)
        job = _Job(request.text, voice, request.sample_rate, emit)

        async def work() -> None:
            try:
                with send:  # closing it ends the loop below
                    await anyio.to_thread.run_sync(job.run, lib, limiter=self._limiter)
            finally:  # a cancelled task (asyncio.run() shutting down) abandons the thread: stop it
                job.abort.set()

        # A task, not a task group: a task group's cancel scope must not stay open across yields.
        worker = asyncio.get_running_loop().create_task(work())
        try:
            async for chunk in receive:
                yield chunk
        finally:
            job.abort.set()  # before closing: a failed hand-over after this is an abort, not an error
            receive.close()
            # Wait, even when cancelled, for the thread to stop (promptly, at its next buffer), so
            # no thread outlives the stream and the library lock is free when this returns.
            with anyio.CancelScope(shield=True):
                await asyncio.wait({worker})
        worker.result()  # the worker's error, if it failed
        yield SynthesisOutcome(finish_reason="stop", model=MODEL)

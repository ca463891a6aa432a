"""The offline engine (eSpeak NG): real-time factor and time to the first chunk.

RTF is seconds of work per second of audio (0.01 = a hundred times faster than real time), measured
from the start of ``OfflineEngine.stream`` to its outcome, so it includes the worker thread, the
streaming resampler (eSpeak speaks at 22050 Hz) and the hand-over of 100 ms chunks to the event loop.

Baseline: the emulator's synthetic signal (``emulator/signal.py``) rendering the same text at the
same rate, in the same process. It is the emulator's other audio source (used when the offline
extra is missing), it produces comparable speech-like PCM for a text, and it is plain CPU work, so
``offline/signal`` says how much cheaper, per second of audio, real speech is than the fallback on
this machine. Both are measured per second of audio they produce, since their durations differ for
the same text. A second table compares sample rates against 24 kHz for the long English text: the
cost of resampling eSpeak's 22050 Hz output.

Each measurement is the median of ``--runs`` runs after one untimed warm-up (library load, signal
wavetables).

Usage: ``python benchmarks/offline_rtf.py [--runs 5] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from importlib.metadata import version

from _report import ms, print_table, versions

from alicloud_tts_realtime import AudioChunk, SpeechRequest, build_request
from alicloud_tts_realtime.emulator.signal import SpeechSignal
from alicloud_tts_realtime.engines.base import Engine
from alicloud_tts_realtime.engines.offline import OfflineEngine

EN = (
    "Realtime speech synthesis turns text into audio while the text is still arriving. "
    "The first sound matters most: a listener forgives a robotic voice sooner than a long silence. "
    "This paragraph is long enough to measure the steady pace of the engine, not only its start. "
)
ZH = (
    "实时语音合成在文本还没有全部到达的时候就开始输出音频。"
    "对听的人来说，第一声最重要：机械的声音可以接受，长时间的沉默却让人不安。"
    "这一段文字足够长，可以测量引擎稳定的速度，而不只是它的启动。"
)
TEXTS = {
    "en short": "Hello there, how are you today?",
    "en medium": EN,
    "en long": EN * 8,
    "zh short": "你好，欢迎使用实时语音合成。",
    "zh medium": ZH,
    "zh long": ZH * 8,
}
RATE = 24000


async def offline_run(engine: Engine, request: SpeechRequest) -> tuple[float, float, float]:
    """Seconds to the first chunk, seconds in all, seconds of audio."""
    started = time.perf_counter()
    first: float | None = None
    size = 0
    async for item in engine.stream(request):
        if isinstance(item, AudioChunk):
            first = first if first is not None else time.perf_counter() - started
            size += len(item.pcm)
    assert first is not None, "no audio"
    return first, time.perf_counter() - started, size / 2 / request.sample_rate


def signal_run(request: SpeechRequest) -> tuple[float, float, float]:
    """The same for the synthetic signal, in 100 ms blocks like the engine's chunks."""
    started = time.perf_counter()
    first: float | None = None
    size = 0
    for block in SpeechSignal(request.text, request.sample_rate, female=True).blocks(request.sample_rate // 10):
        first = first if first is not None else time.perf_counter() - started
        size += len(block)
    assert first is not None, "no signal"
    return first, time.perf_counter() - started, size / 2 / request.sample_rate


async def medians(engine: Engine, request: SpeechRequest, runs: int) -> dict[str, tuple[float, float, float]]:
    """Median (first, total, audio) per source, after one warm-up run each."""
    await offline_run(engine, request)
    signal_run(request)
    results: dict[str, list[tuple[float, float, float]]] = {"offline": [], "signal": []}
    for _ in range(runs):
        results["offline"].append(await offline_run(engine, request))
        results["signal"].append(signal_run(request))
    return {
        source: (
            statistics.median(r[0] for r in rows),
            statistics.median(r[1] for r in rows),
            statistics.median(r[2] for r in rows),
        )
        for source, rows in results.items()
    }


async def run(runs: int, quick: bool) -> None:
    print(f"offline_rtf.py: {versions()}, espeakng-loader {version('espeakng-loader')}, soxr {version('soxr')}")
    texts = {name: text for name, text in TEXTS.items() if not (quick and name.endswith("long"))}
    async with OfflineEngine() as engine:
        rows = []
        for name, text in texts.items():
            request = build_request(text=text, voice="Cherry", sample_rate=RATE)
            m = await medians(engine, request, runs)
            (first, total, audio), (_, s_total, s_audio) = m["offline"], m["signal"]
            rtf, s_rtf = total / audio, s_total / s_audio
            row = [name, str(len(text)), f"{audio:.1f} s", ms(first), f"{rtf:.4f}", f"{1 / rtf:.0f}x"]
            rows.append([*row, f"{s_rtf:.4f}", f"{rtf / s_rtf:.2f}"])
        print_table(
            f"offline engine vs the emulator's synthetic signal, {RATE} Hz; median of {runs} runs",
            ["text", "chars", "audio", "first chunk", "offline RTF", "x real time", "signal RTF", "offline/signal"],
            rows,
        )

        by_rate = {}
        rate_name = "en medium" if quick else "en long"
        rate_text = TEXTS[rate_name]
        for rate in (16000, 24000) if quick else (8000, 16000, 24000, 48000):
            request = build_request(text=rate_text, voice="Cherry", sample_rate=rate)
            await offline_run(engine, request)  # warm-up
            results = [await offline_run(engine, request) for _ in range(runs)]
            by_rate[rate] = (statistics.median(r[0] for r in results), statistics.median(r[1] / r[2] for r in results))
        print_table(
            f"offline engine by sample rate ('{rate_name}'); median of {runs} runs; baseline {RATE} Hz",
            ["rate", "first chunk", "offline RTF", f"RTF / {RATE} Hz"],
            [
                [f"{rate} Hz", ms(first), f"{rtf:.4f}", f"{rtf / by_rate[RATE][1]:.2f}"]
                for rate, (first, rtf) in by_rate.items()
            ],
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (default 5)")
    parser.add_argument("--quick", action="store_true", help="skip the long texts and two of the sample rates")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    asyncio.run(run(args.runs, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

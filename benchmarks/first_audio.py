"""Time to first audio and total time: the native realtime client vs the official SDK vs HTTP.

Every engine talks to the same in-process emulator over loopback, with its synthetic signal as
audio (``audio="signal"``), for two settings:

- **no pacing** (latency 0, rtf 0): the emulator answers as fast as it can, so the figures are the
  protocol and client overhead (plus the emulator's own work, shown as the ``signal`` floor: the
  time the emulator needs to render the same audio, measured in this process);
- **paced** (latency 300 ms, rtf 0.3): roughly what the real service does; the client's share
  should vanish into the service's.

The baseline is the ``sdk`` engine (the official ``dashscope`` SDK bridged to asyncio), run in the
same process, interleaved run by run with the others, so machine noise hits all engines alike.
Each engine gets one untimed warm-up run first (imports, first connection). The native engine
keeps its pooled, configured session between runs and the HTTP engine its connection pool, as they
would in use; the SDK opens one WebSocket per synthesis (``benchmarks/pool.py`` measures the native
engine cold). The native client offers no permessage-deflate by default; ``realtime, deflate``
turns it on (``DASHSCOPE_WS_DEFLATE=1``), which the emulator (uvicorn) accepts, to show what it
costs. The SDK's websocket-client never offers it. Whether the real service accepts deflate is unknown.

Last, the wrong-key failure: how long each engine takes to raise ``AuthenticationError`` when the
emulator refuses the key with HTTP 401, and how long the SDK's own ``connect()`` takes to give up
on the same refusal (it polls for 5 s and then raises a ``TimeoutError`` that does not say why).

Usage: ``python benchmarks/first_audio.py [--runs 20] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable

from _report import ms, percentile, print_table, versions
from pydantic import SecretStr

from alicloud_tts_realtime import AudioChunk, AuthenticationError, Settings, SpeechRequest, build_request
from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig, serve_emulator
from alicloud_tts_realtime.emulator.signal import SpeechSignal
from alicloud_tts_realtime.engines.base import Engine
from alicloud_tts_realtime.engines.http_sse import HttpEngine
from alicloud_tts_realtime.engines.realtime import RealtimeEngine
from alicloud_tts_realtime.engines.sdk import SdkEngine

TEXT = "The quick brown fox jumps over the lazy dog, then naps in the afternoon sun."
QUICK_TEXT = "Hello there."  # --quick: well under a second of audio, so the paced runs stay short
RATE = 24000  # the HTTP API speaks 24 kHz only
KEY = "sk-emulator"
SETTINGS = {"no pacing": (0.0, 0.0), "paced": (300.0, 0.3)}


def realtime_with_deflate(settings: Settings) -> Engine:
    """The native engine with permessage-deflate on (``DASHSCOPE_WS_DEFLATE=1``; off by default)."""
    return RealtimeEngine(dataclasses.replace(settings, ws_deflate=True))


ENGINES: dict[str, Callable[[Settings], Engine]] = {
    "realtime": RealtimeEngine,
    "realtime, deflate": realtime_with_deflate,
    "sdk": SdkEngine,
    "http": HttpEngine,
}


def settings_for(emulator: Emulator, key: str = KEY) -> Settings:
    return Settings(
        api_key=SecretStr(key),
        realtime_url=emulator.url,
        http_base_url=emulator.http_base_url,
        connect_timeout=10,
        idle_timeout=10,
    )


async def timed_run(engine: Engine, request: SpeechRequest) -> tuple[float, float, int]:
    """One synthesis: seconds to the first audio, seconds in all, PCM bytes."""
    started = time.perf_counter()
    first: float | None = None
    size = 0
    async with contextlib.aclosing(engine.stream(request)) as stream:  # type: ignore[type-var]
        async for item in stream:
            if isinstance(item, AudioChunk) and item.pcm:
                if first is None:
                    first = time.perf_counter() - started
                size += len(item.pcm)
    assert first is not None, f"{engine.name} produced no audio"
    return first, time.perf_counter() - started, size


def signal_floor(request: SpeechRequest) -> tuple[float, float]:
    """The emulator's own cost: seconds to its first 100 ms block and to the whole signal."""
    started = time.perf_counter()
    first = None
    for _ in SpeechSignal(request.text, request.sample_rate).blocks(request.sample_rate // 10):
        first = first if first is not None else time.perf_counter() - started
    assert first is not None
    return first, time.perf_counter() - started


async def bench_setting(name: str, latency_ms: float, rtf: float, runs: int, text: str) -> None:
    request = build_request(text=text, voice="Cherry", language_type="English", sample_rate=RATE)
    config = EmulatorConfig(audio="signal", latency_ms=latency_ms, rtf=rtf)
    firsts: dict[str, list[float]] = {label: [] for label in ENGINES}
    totals: dict[str, list[float]] = {label: [] for label in ENGINES}
    async with serve_emulator(config) as emulator, contextlib.AsyncExitStack() as stack:
        engines = {}
        for label, make in ENGINES.items():
            engines[label] = await stack.enter_async_context(make(settings_for(emulator)))
        sizes = {label: (await timed_run(engine, request))[2] for label, engine in engines.items()}  # warm-up
        assert len(set(sizes.values())) == 1, f"the engines returned different audio: {sizes}"
        for _ in range(runs):
            for label, engine in engines.items():  # interleaved, so drift hits every engine alike
                first, total, _ = await timed_run(engine, request)
                firsts[label].append(first)
                totals[label].append(total)
    floors = [signal_floor(request) for _ in range(max(3, runs // 4))]
    firsts["signal"], totals["signal"] = [f for f, _ in floors], [t for _, t in floors]

    rows = []
    for label in firsts:
        first, total = percentile(firsts[label], 50), percentile(totals[label], 50)
        row = [label, ms(first), ms(percentile(firsts[label], 90)), ms(total), ms(percentile(totals[label], 90))]
        if label == "signal":
            rows.append(["signal (emulator's own work)", *row[1:], "", ""])
        else:
            vs_first, vs_total = first / percentile(firsts["sdk"], 50), total / percentile(totals["sdk"], 50)
            rows.append([*row, f"{vs_first:.2f}", f"{vs_total:.2f}"])
    audio_s = sizes["realtime"] / 2 / RATE
    print_table(
        f"{name}: emulator latency {latency_ms:g} ms, rtf {rtf:g}; {runs} runs; {audio_s:.2f} s of audio at {RATE} Hz",
        ["engine", "first p50", "first p90", "total p50", "total p90", "first/sdk", "total/sdk"],
        rows,
    )


async def time_failure(engine: Engine, request: SpeechRequest) -> float:
    """Seconds until ``engine`` raises ``AuthenticationError``."""
    started = time.perf_counter()
    try:
        await timed_run(engine, request)
    except AuthenticationError:
        return time.perf_counter() - started
    raise AssertionError("a wrong key did not raise AuthenticationError")


def raw_sdk_connect(emulator: Emulator, model: str) -> tuple[float, str]:
    """The SDK on its own: ``QwenTtsRealtime.connect()`` with a refused key; seconds and what it raised."""
    import dashscope
    from dashscope.audio.qwen_tts_realtime import QwenTtsRealtime, QwenTtsRealtimeCallback

    previous, dashscope.api_key = dashscope.api_key, "sk-wrong"
    try:
        client = QwenTtsRealtime(model=model, callback=QwenTtsRealtimeCallback(), url=emulator.url)
    finally:
        dashscope.api_key = previous
    started = time.perf_counter()
    try:
        client.connect()
    except Exception as exc:
        return time.perf_counter() - started, type(exc).__name__
    raise AssertionError("the SDK connected with a wrong key")


async def bench_wrong_key(runs: int, quick: bool) -> None:
    request = build_request(text=QUICK_TEXT, voice="Cherry", language_type="English", sample_rate=RATE)
    async with serve_emulator(EmulatorConfig(audio="signal")) as emulator:
        times: dict[str, list[float]] = {}
        for label in ("realtime", "sdk", "http"):
            async with ENGINES[label](settings_for(emulator, key="sk-wrong")) as engine:
                times[label] = [await time_failure(engine, request) for _ in range(runs)]
        raw = None if quick else await asyncio.to_thread(raw_sdk_connect, emulator, request.model or "")
    base = percentile(times["sdk"], 50)
    rows = [
        [
            label,
            ms(percentile(values, 50)),
            ms(max(values)),
            f"{percentile(values, 50) / base:.2f}",
            "AuthenticationError",
        ]
        for label, values in times.items()
    ]
    if raw is not None:
        seconds, raised = raw
        rows.append(["dashscope connect() alone (1 run)", ms(seconds), ms(seconds), f"{seconds / base:.2f}", raised])
    print_table(
        f"wrong key (HTTP 401 at the handshake); {runs} runs",
        ["engine", "p50", "max", "p50/sdk", "raises"],
        rows,
    )


async def run(runs: int, quick: bool) -> None:
    print(f"first_audio.py: {versions()}")
    for name, (latency_ms, rtf) in SETTINGS.items():
        await bench_setting(name, latency_ms, rtf, runs, QUICK_TEXT if quick else TEXT)
    await bench_wrong_key(2 if quick else 3, quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per engine and setting (default 20)")
    parser.add_argument("--quick", action="store_true", help="a short text, and skip the SDK's 5 s connect() timeout")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    # The SDK and websocket-client log refused handshakes at ERROR; the figures are the point here.
    logging.getLogger("dashscope").setLevel(logging.CRITICAL)
    logging.getLogger("websocket").setLevel(logging.CRITICAL)
    asyncio.run(run(args.runs, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Long-lived connections: warm vs cold first audio, per-utterance cost, 100 sessions, idle memory.

Four measurements, each a ratio against a baseline run in the same process:

- **warm vs cold TTFA**, with the emulator's 100 ms handshake delay standing in for the WAN: a cold
  call opens a new engine (a new socket) per call, a warm call reuses the pooled, configured
  session. Target: warm ≤ cold − 90 % of the handshake.
- **20 sequential utterances**, unpaced: the pooled engine through :func:`synthesize` against a raw
  ``websockets`` client that keeps one socket and one configured session and does the least any
  client must (parse each event, decode each delta): the floor. Target: ≤ 1.1x the floor per utterance.
- **100 concurrent syntheses** (``DASHSCOPE_MAX_CONNECTIONS=100``), permessage-deflate off and on:
  throughput and the client's CPU seconds per second of audio. The emulator runs in a subprocess
  so that only the client's CPU is counted. Target: ≤ 1 ms of CPU per audio second.
- **memory per idle pooled session**: traced Python allocations of 20 prewarmed, idle sessions.
  Target: < 100 KiB each.

Usage: ``python benchmarks/pool.py [--runs 20] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator

from _report import ms, percentile, print_table, ratio, versions
from pydantic import SecretStr

from alicloud_tts_realtime import AudioChunk, Settings, build_request
from alicloud_tts_realtime import protocol as p
from alicloud_tts_realtime.emulator import EmulatorConfig, serve_emulator
from alicloud_tts_realtime.engines.realtime import RealtimeEngine
from alicloud_tts_realtime.service import synthesize

KEY = "sk-emulator"
TEXT = "Short reply."
LONG_TEXT = "The quick brown fox jumps over the lazy dog, then naps in the afternoon sun."
HANDSHAKE_MS = 100.0


def settings(url: str, **overrides: object) -> Settings:
    base = Settings(api_key=SecretStr(KEY), realtime_url=url, connect_timeout=30, idle_timeout=30)
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


async def first_audio(engine: RealtimeEngine, text: str) -> float:
    started = time.perf_counter()
    first = None
    async with contextlib.aclosing(engine.stream(build_request(text=text, voice="Cherry"))) as stream:  # type: ignore[type-var]
        async for item in stream:
            if first is None and isinstance(item, AudioChunk) and item.pcm:
                first = time.perf_counter() - started
    assert first is not None
    return first


async def warm_vs_cold(runs: int) -> None:
    config = EmulatorConfig(audio="signal", handshake_delay_ms=HANDSHAKE_MS)
    cold: list[float] = []
    warm: list[float] = []
    async with serve_emulator(config) as emulator, RealtimeEngine(settings(emulator.url)) as pooled:
        await pooled.prewarm(build_request(text=TEXT, voice="Cherry"))
        for _ in range(runs):  # interleaved
            async with RealtimeEngine(settings(emulator.url)) as fresh:
                cold.append(await first_audio(fresh, TEXT))
            warm.append(await first_audio(pooled, TEXT))
    c50, w50 = percentile(cold, 50), percentile(warm, 50)
    rows = [
        ["cold (new socket)", ms(c50), ms(percentile(cold, 90)), "1.00"],
        ["warm (pooled)", ms(w50), ms(percentile(warm, 90)), ratio(w50, c50)],
    ]
    print_table(
        f"warm vs cold TTFA, handshake {HANDSHAKE_MS:g} ms", ["call", "TTFA p50", "TTFA p90", "warm/cold"], rows
    )
    saved = (c50 - w50) * 1000
    print(f"\nsaved {saved:.1f} ms of a {HANDSHAKE_MS:g} ms handshake (target ≥ {0.9 * HANDSHAKE_MS:g} ms)")


async def raw_floor(url: str, n: int) -> float:
    """A bare websockets client: one socket, one session, ``n`` utterances; seconds per utterance."""
    from websockets.asyncio.client import connect

    async with connect(
        f"{url}?model=qwen3-tts-flash-realtime", additional_headers={"Authorization": f"Bearer {KEY}"}, compression=None
    ) as ws:
        await ws.recv()  # session.created
        config = p.SessionConfig(voice="Cherry", mode="commit", response_format="pcm", sample_rate=24000)
        await ws.send(p.dump_event(p.SessionUpdate(session=config)))
        await ws.recv()  # session.updated
        started = time.perf_counter()
        pcm: list[bytes] = []
        for _ in range(n):
            await ws.send(p.dump_event(p.InputTextBufferAppend(text=TEXT)))
            await ws.send(p.dump_event(p.InputTextBufferCommit()))
            while True:  # the least a client does to get the PCM: parse each event, decode each delta
                event = json.loads(await ws.recv())
                if event["type"] == "response.audio.delta":
                    pcm.append(base64.b64decode(event["delta"]))
                elif event["type"] == "response.done":
                    break
        return (time.perf_counter() - started) / n


async def pooled_sequence(url: str, n: int, *, through_synthesize: bool) -> float:
    """The pooled engine: its stream alone, or through synthesize (which also base64-encodes every chunk)."""
    request = build_request(text=TEXT, voice="Cherry")
    async with RealtimeEngine(settings(url)) as engine:
        await synthesize(request, engine)  # opens the pooled socket
        started = time.perf_counter()
        for _ in range(n):
            if through_synthesize:
                await synthesize(request, engine)
            else:
                async with contextlib.aclosing(engine.stream(request)) as stream:  # type: ignore[type-var]
                    async for _item in stream:
                        pass
        return (time.perf_counter() - started) / n


async def sequential(rounds: int, n: int = 20) -> None:
    floor: list[float] = []
    pooled: list[float] = []
    full: list[float] = []
    async with serve_emulator(EmulatorConfig(audio="signal")) as emulator:
        await raw_floor(emulator.url, 2)  # warm-up
        for _ in range(rounds):  # interleaved
            floor.append(await raw_floor(emulator.url, n))
            pooled.append(await pooled_sequence(emulator.url, n, through_synthesize=False))
            full.append(await pooled_sequence(emulator.url, n, through_synthesize=True))
    f50, p50, s50 = percentile(floor, 50), percentile(pooled, 50), percentile(full, 50)
    rows = [
        ["raw websockets, one socket", ms(f50), "1.00"],
        ["pooled engine (stream)", ms(p50), ratio(p50, f50)],
        ["pooled engine (synthesize)", ms(s50), ratio(s50, f50)],
    ]
    print_table(f"{n} sequential utterances, unpaced", ["client", "per utterance p50", "x floor"], rows)


@contextlib.asynccontextmanager
async def emulator_process(*args: str) -> AsyncIterator[str]:
    """The emulator in a subprocess (so its CPU is not the client's); yields its realtime URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alicloud_tts_realtime", "emulator", "--audio", "signal", *args,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            if not line:
                raise RuntimeError("the emulator did not start")
            if "DASHSCOPE_REALTIME_URL=" in line:
                yield line.split("=", 1)[1].strip()
                break
    finally:
        proc.terminate()
        await proc.wait()


async def concurrent(sessions: int) -> None:
    rows = []
    async with emulator_process() as url:
        for deflate in (False, True):
            async with RealtimeEngine(settings(url, max_connections=sessions, ws_deflate=deflate)) as engine:
                request = build_request(text=LONG_TEXT, voice="Cherry")
                cpu, wall = time.process_time(), time.perf_counter()
                responses = await asyncio.gather(*(synthesize(request, engine) for _ in range(sessions)))
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            audio_s = sum(r.duration_ms for r in responses) / 1000
            ttfa = [r.first_audio_ms or 0 for r in responses]
            rows.append(
                [
                    "on" if deflate else "off (default)",
                    f"{sessions / wall:.1f}",
                    f"{audio_s / wall:.1f}",
                    f"{cpu / audio_s * 1000:.2f}",
                    f"{percentile(ttfa, 50):.0f} ms",
                    f"{percentile(ttfa, 99):.0f} ms",
                ]
            )
    header = ["deflate", "syntheses/s", "audio s/s", "client CPU ms per audio s", "TTFA p50", "TTFA p99"]
    print_table(f"{sessions} concurrent syntheses (emulator in a subprocess)", header, rows)


async def idle_memory(n: int) -> None:
    async with emulator_process() as url, RealtimeEngine(settings(url, max_connections=n)) as engine:
        request = build_request(text=TEXT, voice="Cherry")
        await engine.prewarm(request, 1)  # imports, first-use caches
        await engine.aclose()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        opened = await engine.prewarm(request, n)
        await asyncio.sleep(0.2)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert opened == n, opened
    per = (after - before) / n / 1024
    print_table("memory per idle pooled session", ["sessions", "traced KiB each"], [[str(n), f"{per:.1f}"]])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per measurement (default: 20)")
    parser.add_argument("--quick", action="store_true", help="smallest settings (smoke test)")
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs
    print(versions())
    await warm_vs_cold(runs)
    await sequential(1 if args.quick else 5, 5 if args.quick else 20)
    await concurrent(10 if args.quick else 100)
    await idle_memory(3 if args.quick else 20)


if __name__ == "__main__":
    asyncio.run(main())

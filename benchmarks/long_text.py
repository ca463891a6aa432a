"""Time to first audio of a long text against a one-sentence text, through ``service.synthesize``.

A long text is spoken segment by segment (``stream.py``): its first sentence is committed as soon as
it is cut, so its first audio should come as fast as a short text's. Both texts go through the
native ``realtime`` engine to the same in-process emulator (synthetic signal), with a fresh engine
(one new connection) per run, interleaved run by run so machine noise hits both alike; each run
stops at the first audio (the call is cancelled, which closes the socket). Two settings: no pacing
(latency 0: the client's own overhead shows) and paced like the service (latency 300 ms, rtf 0.3).

The baseline is the one-sentence text; the target is a ratio within 1.2.

Usage: ``python benchmarks/long_text.py [--runs 20] [--chars 20000] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time

from _report import ms, percentile, print_table, ratio, versions
from pydantic import SecretStr

from alicloud_tts_realtime import AudioChunk, Settings, build_request
from alicloud_tts_realtime.emulator import EmulatorConfig, serve_emulator
from alicloud_tts_realtime.engines.realtime import RealtimeEngine
from alicloud_tts_realtime.service import RetryOptions, synthesize

SENTENCE = "The quick brown fox jumps over the lazy dog, then naps in the afternoon sun."
PARAGRAPH = (
    "Agents read whole answers, articles and chapters aloud. 他们也朗读很长的中文文章，一段接一段。 "
    "Dr. Smith paid 3.14 dollars, e.g. a small sum, in the U.S. last year! Would you read this aloud? "
)
KEY = "sk-emulator"
SETTINGS = {"no pacing": (0.0, 0.0), "paced": (300.0, 0.3)}


def long_text(chars: int) -> str:
    return (SENTENCE + " " + PARAGRAPH * (chars // len(PARAGRAPH) + 1))[:chars]


async def first_audio(url: str, text: str) -> float:
    """Seconds from the call to its first audio, on a new connection; the rest is cancelled."""
    settings = Settings(api_key=SecretStr(KEY), key_source="bench", realtime_url=url)
    got = asyncio.Event()

    async def on_chunk(chunk: AudioChunk) -> None:
        got.set()

    async with RealtimeEngine(settings) as engine:
        started = time.perf_counter()
        request = build_request(text=text, voice="Cherry")
        task = asyncio.create_task(synthesize(request, engine, on_chunk=on_chunk, retry=RetryOptions(0)))
        waiter = asyncio.create_task(got.wait())
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        elapsed = time.perf_counter() - started
        for pending in (task, waiter):
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        if waiter not in done:
            raise RuntimeError("the synthesis ended without audio")
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--chars", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="3 runs, 5,000 characters: for the smoke test")
    args = parser.parse_args()
    runs, chars = (3, 5000) if args.quick else (args.runs, args.chars)
    logging.disable(logging.WARNING)
    texts = {"one sentence": SENTENCE, f"{chars:,} characters": long_text(chars)}
    print(f"versions: {versions()}; runs: {runs}; long text: {chars} characters\n")
    for title, (latency, rtf) in SETTINGS.items():
        config = EmulatorConfig(audio="signal", api_key=KEY, latency_ms=latency, rtf=rtf)
        times: dict[str, list[float]] = {name: [] for name in texts}
        async with serve_emulator(config, host="127.0.0.1", port=0) as emulator:
            for text in texts.values():  # one untimed warm-up each
                await first_audio(emulator.url, text)
            for _ in range(runs):
                for name, text in texts.items():
                    times[name].append(await first_audio(emulator.url, text))
        base = percentile(times["one sentence"], 50)
        rows = [
            [name, ms(percentile(t, 50)), ms(percentile(t, 90)), ratio(percentile(t, 50), base)]
            for name, t in times.items()
        ]
        print_table(
            f"{title} (latency {latency:g} ms, rtf {rtf:g})", ["text", "first p50", "first p90", "p50/sentence"], rows
        )


if __name__ == "__main__":
    asyncio.run(main())

"""Batch synthesis: throughput against the concurrency bound, flat memory, and ``--rpm`` pacing.

Three questions, each against an emulator running in *another* process (the CLI, ``--audio signal
--max-connections 3``), so that only the client's work is measured:

- **throughput**: ``--items`` (default 1,000) short items through :func:`synthesize_batch` at
  concurrency 3, against two bounds measured in the same process with the same engine:

  - the *concurrency bound*: the same items through plain ``service.synthesize(output="file")``
    calls, three at a time (an ``asyncio.Semaphore``), with no manifest, pacing or validation:
    the best a client can do at that concurrency on this machine. The target is batch ≤ 1.1× it.
  - the *ideal bound*: the per-item time measured on one connection (items one after another)
    × items / concurrency. Against an unpaced emulator this is not reachable on 2 cores, since the
    work is CPU (client and emulator), not waiting; so it is also measured against a paced
    emulator (latency 50 ms, rtf 0.05), where an item is mostly waiting.

- **memory**: peak RSS (``wait4`` ``ru_maxrss``) of the real CLI, ``alicloud-tts-realtime batch``,
  for 100 and 1,000 items, and for validating 10,000 and 100,000 lines (an input whose last line is
  invalid: the whole file is read, exit 2, nothing sent). Flat means the larger is about the same.

- **rpm**: a ``--rpm 120`` run; every utterance's start time is noted as the engine is asked for
  it (the pool reuses 3 sockets, so connections are not what the limit counts). The limit holds
  when no 1-second window holds more than 2 starts.

Usage: ``python benchmarks/batch.py [--items 1000] [--runs 3] [--quick]``. Nothing is left behind: the items
and their files live in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _report import print_table, ratio, versions
from pydantic import SecretStr

from alicloud_tts_realtime import Settings
from alicloud_tts_realtime.batch import BatchItem, synthesize_batch
from alicloud_tts_realtime.engines.base import Engine
from alicloud_tts_realtime.engines.realtime import RealtimeEngine
from alicloud_tts_realtime.service import synthesize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from timed_engine import TimedEngine

KEY = "sk-emulator"
TEXTS = ("Good morning.", "Item number {n}.", "A short line to say.", "Hello there.", "Thanks, and goodbye.")
CONCURRENCY = 3
MB = 1024 * 1024


@contextlib.contextmanager
def emulator_process(*options: str) -> Iterator[str]:
    """The emulator CLI in a process of its own; yields its realtime URL."""
    args = ["emulator", "--port", "0", "--audio", "signal", "--max-connections", str(CONCURRENCY), *options]
    command = [sys.executable, "-m", "alicloud_tts_realtime", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if "ready" not in line:
                raise RuntimeError("the emulator did not start")
            yield line.split()[-1]
        finally:
            proc.terminate()


def items(count: int, prefix: str = "item") -> list[BatchItem]:
    return [
        BatchItem.build({"id": f"{prefix}-{n:05d}", "text": TEXTS[n % len(TEXTS)].format(n=n)}) for n in range(count)
    ]


def engine_for(url: str) -> RealtimeEngine:
    return RealtimeEngine(Settings(api_key=SecretStr(KEY), key_source="benchmark", realtime_url=url))


# --- throughput --------------------------------------------------------------------------------


async def sequential(engine: RealtimeEngine, batch: list[BatchItem], out: Path) -> float:
    """Seconds per item, one after another on one connection at a time."""
    started = time.perf_counter()
    for item in batch:
        await synthesize(item.request, engine, output="file", path=out / f"{item.id}.wav")
    return (time.perf_counter() - started) / len(batch)


async def plain_concurrent(engine: RealtimeEngine, batch: list[BatchItem], out: Path) -> float:
    """Wall seconds for plain synthesize() calls, CONCURRENCY at a time (files only, no manifest)."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: BatchItem) -> None:
        async with gate:
            await synthesize(item.request, engine, output="file", path=out / f"{item.id}.wav")

    started = time.perf_counter()
    await asyncio.gather(*(one(item) for item in batch))
    return time.perf_counter() - started


async def batched(engine: Engine, batch: list[BatchItem], out: Path, rpm: float | None = None) -> float:
    started = time.perf_counter()
    results = [r async for r in synthesize_batch(batch, out, engine=engine, concurrency=CONCURRENCY, rpm=rpm)]
    wall = time.perf_counter() - started
    failed = [r for r in results if r.status != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} items failed, e.g. {failed[0].error}")
    return wall


async def throughput(url: str, count: int, sample: int, reps: int, work: Path) -> list[str]:
    """Medians over ``reps`` interleaved runs of each (the order alternates, to cancel drift)."""
    per_item, plain, batch = [], [], []
    cpu: dict[str, list[float]] = {"plain": [], "batch": []}  # this process's CPU seconds per item
    async with engine_for(url) as engine:
        # Warm up both processes (imports, first connections, the emulator's lazy set-up).
        await plain_concurrent(engine, items(30, "warm-up"), work / "warm-up")
        for rep in range(reps):
            per_item.append(await sequential(engine, items(sample, f"seq{rep}"), work / f"seq{rep}"))
            runs = [("plain", plain_concurrent, plain), ("batch", batched, batch)]
            for name, run, figures in runs if rep % 2 == 0 else runs[::-1]:
                used = time.process_time()
                figures.append(await run(engine, items(count, f"{name}{rep}"), work / f"{name}{rep}"))
                cpu[name].append((time.process_time() - used) / count)
    one, plain_wall, batch_wall = (statistics.median(f) for f in (per_item, plain, batch))
    plain_cpu, batch_cpu = (statistics.median(cpu[name]) for name in ("plain", "batch"))
    ideal = one * count / CONCURRENCY
    return [
        f"{count}",
        f"{reps}",
        f"{one * 1000:.1f} ms",
        f"{ideal:.2f} s",
        f"{plain_wall:.2f} s",
        f"{batch_wall:.2f} s",
        f"{count / batch_wall:.0f}/s",
        ratio(batch_wall, plain_wall),
        ratio(batch_wall, ideal),
        f"{plain_cpu * 1000:.1f} / {batch_cpu * 1000:.1f} ms",
    ]


# --- memory ------------------------------------------------------------------------------------


def write_input(path: Path, count: int, *, bad_last: bool = False) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for n in range(count):
            handle.write(json.dumps({"id": f"line-{n:06d}", "text": TEXTS[n % len(TEXTS)].format(n=n)}) + "\n")
        if bad_last:
            handle.write('{"id": "line-000000", "text": "A duplicate, so that nothing is sent."}\n')


def cli_rss(url: str, source: Path, out: Path) -> tuple[int, int, float]:
    """(exit code, peak RSS in bytes, wall seconds) of one ``batch`` CLI run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env |= {"DASHSCOPE_API_KEY": KEY, "DASHSCOPE_REALTIME_URL": url}
    command = [sys.executable, "-m", "alicloud_tts_realtime", "batch", str(source), "--out-dir", str(out)]
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return proc.returncode, peak, wall


def memory(url: str, sizes: tuple[int, int], lines: tuple[int, int], work: Path) -> list[list[str]]:
    rows = []
    for label, counts, bad in (("batch, items", sizes, False), ("validate only, lines", lines, True)):
        peaks = []
        for count in counts:
            source = work / f"mem-{label[0]}-{count}.jsonl"
            write_input(source, count, bad_last=bad)
            code, peak, wall = cli_rss(url, source, work / f"mem-{label[0]}-{count}")
            if code != (2 if bad else 0):
                raise RuntimeError(f"the batch CLI exited {code} for {count} {label}")
            peaks.append((count, peak, wall))
        (small, small_peak, small_wall), (large, large_peak, large_wall) = peaks
        rows.append([
            label, f"{small:,}", f"{small_peak / MB:.1f}", f"{small_wall:.1f} s",
            f"{large:,}", f"{large_peak / MB:.1f}", f"{large_wall:.1f} s", ratio(large_peak, small_peak),
        ])  # fmt: skip
    return rows


# --- rpm ---------------------------------------------------------------------------------------


def most_in_a_second(starts: list[float]) -> int:
    """The most starts in any half-open window [t, t + 1 s), t a start."""
    ordered = sorted(starts)
    best, low = 0, 0
    for high, start in enumerate(ordered):
        while start - ordered[low] >= 1.0:
            low += 1
        best = max(best, high - low + 1)
    return best


async def paced(url: str, count: int, rpm: float, work: Path) -> list[str]:
    async with engine_for(url) as realtime:
        timed = TimedEngine(realtime)
        wall = await batched(timed, items(count, "rpm"), work / "rpm", rpm=rpm)
    starts = timed.starts
    gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)]
    span = max(starts) - min(starts)
    return [
        f"{rpm:g}",
        f"{count}",
        f"{len(starts)}",
        f"{wall:.2f} s",
        f"{(len(starts) - 1) / span * 60:.1f}" if span else "–",
        f"{most_in_a_second(starts)}",
        f"{min(gaps) * 1000:.0f} ms" if gaps else "–",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000, help="items of the throughput run (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs of each case; medians (default 3)")
    parser.add_argument("--quick", action="store_true", help="few items, for the smoke test")
    args = parser.parse_args(argv)
    count = 40 if args.quick else args.items
    sample = 10 if args.quick else 100
    paced_count = 30 if args.quick else 150
    sizes = (10, 40) if args.quick else (100, 1000)
    lines = (1000, 4000) if args.quick else (10_000, 100_000)
    rpm, rpm_items = (600.0, 8) if args.quick else (120.0, 40)
    print(f"{versions()}; concurrency {CONCURRENCY}")

    header = [
        "items", "runs", "per item, 1 conn", "ideal bound", "concurrency bound", "batch", "batch rate",
        "batch / concurrency bound", "batch / ideal", "client CPU per item, bound / batch",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="tts-batch-bench-") as tmp:
        work = Path(tmp)
        with emulator_process() as url:
            unpaced = asyncio.run(throughput(url, count, sample, args.runs, work / "unpaced"))
            print_table("throughput, unpaced emulator", header, [unpaced])
            mem_rows = memory(url, sizes, lines, work)
        with emulator_process("--latency-ms", "50", "--rtf", "0.05") as url:
            paced_row = asyncio.run(throughput(url, paced_count, min(sample, 30), args.runs, work / "paced"))
            print_table("throughput, paced emulator (latency 50 ms, rtf 0.05)", header, [paced_row])
        mem_header = ["case", "small", "RSS MiB", "wall", "large", "RSS MiB", "wall", "large / small"]
        print_table("memory of the batch CLI (peak RSS)", mem_header, mem_rows)
        with emulator_process() as url:
            rpm_row = asyncio.run(paced(url, rpm_items, rpm, work))
        rpm_header = ["rpm", "items", "utterances", "wall", "starts/min", "most starts in 1 s", "shortest gap"]
        print_table("rpm pacing, unpaced emulator", rpm_header, [rpm_row])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory of a long synthesis by output mode, and of many concurrent realtime sessions.

Two questions, each against the raw PCM size of the audio involved (the least any client that
hands back the whole audio must hold):

- **output mode**: ``service.synthesize`` of a long Mandarin text (about ten minutes of audio) with
  the offline engine, ``output="file"`` (WAV, and ``--formats`` encoded ones) vs ``"chunks"`` vs
  ``"both"``. The offline engine keeps the emulator out of the measured process. The audio streams
  through sinks (:mod:`alicloud_tts_realtime.sinks`): a file sink holds at most one batch
  (``FLUSH_BYTES``), the chunks sink the base64 text (4/3 of the PCM). Targets (issue 11): ``file``
  grows RSS by less than 10 MiB, ``chunks`` by less than 1.5x the PCM. The ``file``, ``chunks`` and
  ``both`` cases are run again through the native ``realtime`` engine against an unpaced emulator in
  another process (its synthetic signal, so a little less audio than eSpeak's).
- **concurrency**: ``--sessions`` (default 20) simultaneous ``synthesize(output="chunks")`` calls
  through the native ``realtime`` engine and through the official-SDK ``sdk`` engine (the baseline),
  against an emulator running in *another* process (paced at rtf 0.2 so the sessions overlap), so
  only the client's memory is measured. One session of each is the per-session baseline.

Each case runs in a fresh Python process (``--child``), which first does one short warm-up synthesis
(imports, library load, first connection). Then it runs the case twice: once untraced, for the RSS
peak (``resource.getrusage().ru_maxrss``, which only grows, hence a process per case), and once
under ``tracemalloc``, for the peak of Python allocations (C allocations such as eSpeak's are not
seen). "RSS growth" is the peak after the case minus the peak before it.

Usage: ``python benchmarks/memory.py [--runs 1] [--sessions 20] [--formats mp3,ogg,flac] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _report import print_table, ratio, versions
from pydantic import SecretStr

from alicloud_tts_realtime import AudioChunk, Settings, build_request
from alicloud_tts_realtime.engines.base import Engine
from alicloud_tts_realtime.service import synthesize

SENTENCE = "Realtime speech synthesis turns text into audio while the text is still arriving. "
# About ten minutes of eSpeak audio (~255 ms per character); English would pass the 5,000-character cap.
LONG_TEXT = "实时语音合成在文字仍在到达时就把它变成声音，听的人不必等到最后。" * 75
SESSION_TEXT = SENTENCE * 2  # about ten seconds of the emulator's signal
RATE = 24000
MB = 1024 * 1024


def max_rss() -> int:
    """Peak resident set size of this process so far, in bytes (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# --- the child: one case in a fresh process ------------------------------------------------------


def make_engine(kind: str, url: str | None) -> Engine:
    if kind == "offline":
        from alicloud_tts_realtime.engines.offline import OfflineEngine

        return OfflineEngine()
    settings = Settings(api_key=SecretStr("sk-emulator"), realtime_url=url or "", connect_timeout=10, idle_timeout=30)
    if kind == "sdk":
        from alicloud_tts_realtime.engines.sdk import SdkEngine

        return SdkEngine(settings)
    from alicloud_tts_realtime.engines.realtime import RealtimeEngine

    return RealtimeEngine(settings)


async def run_case(
    engine: Engine, text: str, output: str, sessions: int, out_dir: Path, audio_format: str | None = None
) -> int:
    """Run ``sessions`` concurrent syntheses of ``text``; return the PCM bytes received."""
    received = 0

    async def count(chunk: AudioChunk) -> None:
        nonlocal received
        received += len(chunk.pcm)

    language = "English" if text.isascii() else "Chinese"
    request = build_request(text=text, voice="Cherry", language_type=language, sample_rate=RATE)
    calls = [
        synthesize(request, engine, output=output, audio_dir=out_dir, on_chunk=count, format=audio_format)  # type: ignore[arg-type]
        for _ in range(sessions)
    ]
    await asyncio.gather(*calls)
    return received


async def child(case: dict[str, Any]) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        async with make_engine(case["engine"], case.get("url")) as engine:
            await run_case(engine, "Warm up.", "chunks", 1, Path(tmp))
            gc.collect()
            before = max_rss()
            fmt = case.get("format")
            pcm = await run_case(engine, case["text"], case["output"], case["sessions"], Path(tmp), fmt)
            after = max_rss()
            gc.collect()
            tracemalloc.start()
            await run_case(engine, case["text"], case["output"], case["sessions"], Path(tmp), fmt)
            traced = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    return {"pcm": pcm, "traced": traced, "rss_before": before, "rss_after": after}


# --- the parent: spawn the cases and print the tables ---------------------------------------------


def measure(case: dict[str, Any], runs: int) -> dict[str, int]:
    """Run ``case`` in ``runs`` fresh processes; the median of each figure."""
    results = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(case)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"case {case['label']} failed:\n{done.stderr}")
        results.append(json.loads(done.stdout.splitlines()[-1]))
    return {key: round(statistics.median(r[key] for r in results)) for key in results[0]}


@contextlib.contextmanager
def emulator_process(latency_ms: int = 100, rtf: float = 0.2) -> Iterator[str]:
    """The emulator in a process of its own (the CLI), by default paced so sessions overlap; yields its URL."""
    args = ["emulator", "--port", "0", "--audio", "signal", "--latency-ms", str(latency_ms), "--rtf", str(rtf)]
    command = [sys.executable, "-m", "alicloud_tts_realtime", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # "DashScope emulator ready: realtime ws://127.0.0.1:PORT/api-ws/v1/realtime"
            if "ready" not in line:
                raise RuntimeError("the emulator did not start")
            yield line.split()[-1]
        finally:
            proc.terminate()


def mode_row(label: str, result: dict[str, int]) -> list[str]:
    """Figures of one case, in MiB and as multiples of its raw PCM."""
    pcm, growth = result["pcm"], result["rss_after"] - result["rss_before"]
    cells = [f"{pcm / MB:.1f}", f"{result['traced'] / MB:.1f}", ratio(result["traced"], pcm)]
    return [label, *cells, f"{result['rss_after'] / MB:.1f}", f"{growth / MB:.1f}", ratio(growth, pcm)]


HEADER = ["case", "PCM MiB", "traced peak MiB", "traced / PCM", "RSS peak MiB", "RSS growth MiB", "growth / PCM"]


def run(sessions: int, runs: int, quick: bool, formats: list[str]) -> None:
    print(f"memory.py: {versions()}")
    long_text = SENTENCE * 3 if quick else LONG_TEXT
    rows = []
    modes = [("file", None), *(("file", name) for name in formats), ("chunks", None), ("both", None)]
    for output, fmt in modes:
        case = {"label": output, "engine": "offline", "text": long_text, "output": output, "sessions": 1, "format": fmt}
        label = f"output={output}" + (f", format={fmt}" if fmt else "")
        rows.append(mode_row(label, measure(case, runs)))
    with emulator_process(latency_ms=0, rtf=0) as url:  # the same text through the native engine
        for output in ("file", "chunks", "both"):
            case = {"label": output, "engine": "realtime", "url": url, "text": long_text, "output": output}
            rows.append(mode_row(f"output={output}, realtime", measure({**case, "sessions": 1}, runs)))
    title = "output mode: one long synthesis, offline engine, then realtime (unpaced emulator in another process)"
    print_table(f"{title}; median of {runs} processes", HEADER, rows)

    session_text = "Hello there." if quick else SESSION_TEXT
    results = {}
    with emulator_process() as url:
        for kind in ("realtime", "sdk"):
            for n in (1, sessions):
                case = {"label": kind, "engine": kind, "url": url, "text": session_text, "output": "chunks"}
                results[kind, n] = measure({**case, "sessions": n}, runs)
    print_table(
        f"concurrent sessions against the emulator (output=chunks); median of {runs} processes",
        HEADER,
        [mode_row(f"{kind} x{n}", result) for (kind, n), result in results.items()],
    )

    rows = []
    per: dict[str, tuple[float, float]] = {}
    for kind in ("realtime", "sdk"):
        one, many = results[kind, 1], results[kind, sessions]
        growth = [r["rss_after"] - r["rss_before"] for r in (one, many)]
        per[kind] = ((many["traced"] - one["traced"]) / (sessions - 1), (growth[1] - growth[0]) / (sessions - 1))
    for kind, (traced, rss) in per.items():
        vs_sdk = [ratio(traced, per["sdk"][0]), ratio(rss, per["sdk"][1])]
        rows.append([kind, f"{traced / MB:.2f}", f"{rss / MB:.2f}", *vs_sdk])
    print_table(
        f"each extra session: (x{sessions} - x1) / {sessions - 1}; baseline: sdk",
        ["engine", "traced MiB", "RSS MiB", "traced / sdk", "RSS / sdk"],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20, help="concurrent realtime sessions (default 20)")
    parser.add_argument("--runs", type=int, default=1, help="processes per case; figures are medians (default 1)")
    parser.add_argument("--quick", action="store_true", help="short texts and 3 sessions")
    parser.add_argument(
        "--formats", default="mp3,ogg,flac", help="encoded formats to measure in file mode (default mp3,ogg,flac)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(child(json.loads(args.child)))))
        return 0
    sessions = 3 if args.quick else args.sessions
    if sessions < 2 or args.runs < 1:
        parser.error("--sessions must be at least 2 and --runs at least 1")
    run(sessions, args.runs, args.quick, [name for name in args.formats.split(",") if name])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

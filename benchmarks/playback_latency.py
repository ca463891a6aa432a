"""Time to first sound: from ``tools/call`` (and from the CLI's start) to the first PCM byte at the player's stdin.

The player is the fake ``paplay`` of the tests (``tests/fake_players.py``), first on ``PATH``: a
small Python script that records the ``time.monotonic()`` of its first byte (the clock is the
machine's, shared by every process) and every byte it got. The service is the package's emulator
in another process, paced like the service at half real time (latency 300 ms, rtf 0.5), on
127.0.0.1.

The baseline is the same call's time to first audio: the moment the realtime connection's reader
received the first ``response.audio.delta``, taken from its debug log record (a handler on its
logger records ``time.monotonic()``), in this process. The gap (first byte − first audio) is what
playback adds, plus the routing of the event to the call: the decoding, the sink's buffer, its
feeder task, the pipe and the player's read. Target: ≤ 20 ms.

- ``mcp``: an in-memory MCP client calls ``tts_realtime`` with ``play: true`` on a server built by
  ``build_server``, each call after the previous player ended (no queueing).
- ``cli``: ``main(["speak", TEXT, "--play"])`` in this process (the interpreter's own start-up is
  not counted).

Every run checks that the player got exactly the saved WAV's samples.

Usage: ``python benchmarks/playback_latency.py [--runs 10] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

from _report import ms, percentile, print_table, versions

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fake_players import install_fake_player, player_runs

TEXT = "The quick brown fox jumps over the lazy dog, then naps in the afternoon sun."
QUICK_TEXT = "Hello there."
KEY = "sk-emulator"


class FirstDelta(logging.Handler):
    """Records ``time.monotonic()`` of the first audio delta the realtime connection logs after :meth:`reset`."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.at: float | None = None

    def reset(self) -> None:
        self.at = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.at is None and message.startswith("received") and "response.audio.delta" in message:
            self.at = time.monotonic()


def pcm_of(path: str) -> bytes:
    with wave.open(path, "rb") as wav:
        return wav.readframes(wav.getnframes())


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the fake player did not finish")
        time.sleep(0.01)


def start_emulator(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "alicloud_tts_realtime", "emulator", "--port", "0", "--audio", "signal"),
            *("--latency-ms", "300", "--rtf", "0.5", "--api-key", KEY),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, line.split()[-1]


def record(
    log: Path, started: float, delta: FirstDelta, file_path: str, rows: list[tuple[float, float, float]]
) -> None:
    wait_for(lambda: bool(player_runs(log)) and player_runs(log)[-1].done)
    run = player_runs(log)[-1]
    if run.pcm != pcm_of(file_path):
        raise AssertionError("the player did not get the saved audio")
    assert run.first is not None and delta.at is not None
    rows.append((delta.at - started, run.first - started, run.first - delta.at))


def bench_cli(runs: int, text: str, log: Path, out: Path, delta: FirstDelta) -> list[tuple[float, float, float]]:
    from alicloud_tts_realtime.cli import main

    rows: list[tuple[float, float, float]] = []
    for i in range(runs + 1):  # one warm-up
        target = out / f"cli-{i}.wav"
        delta.reset()
        started = time.monotonic()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(["speak", text, "--play", "--engine", "realtime", "--output", str(target)])
        if code != 0:
            raise RuntimeError("speak --play failed")
        if i:
            record(log, started, delta, str(target), rows)
        else:
            wait_for(lambda: player_runs(log)[-1].done)
    return rows


def bench_mcp(runs: int, text: str, log: Path, delta: FirstDelta) -> list[tuple[float, float, float]]:
    from mcp import Client

    from alicloud_tts_realtime.mcp_server import ServerOptions, build_server
    from alicloud_tts_realtime.settings import load_settings

    async def main() -> list[tuple[float, float, float]]:
        rows: list[tuple[float, float, float]] = []
        server = build_server(load_settings(), ServerOptions(engine="realtime"))
        async with Client(server) as client:
            for i in range(runs + 1):
                delta.reset()
                started = time.monotonic()
                result = await client.call_tool("tts_realtime", {"text": text, "voice": "Cherry", "play": True})
                data = result.structured_content
                if result.is_error or data is None or data["playback"] != "playing":
                    raise RuntimeError(f"tts_realtime failed: {result}")
                if i:
                    await asyncio.to_thread(record, log, started, delta, data["file_path"], rows)
                else:
                    await asyncio.to_thread(wait_for, lambda: player_runs(log)[-1].done)
        return rows

    return asyncio.run(main())


def summary(name: str, rows: list[tuple[float, float, float]]) -> list[str]:
    ttfa, first, gap = ([row[i] for row in rows] for i in range(3))
    return [
        name,
        ms(percentile(ttfa, 50)),
        ms(percentile(first, 50)),
        ms(percentile(gap, 50)),
        ms(percentile(gap, 90)),
        ms(max(gap)),
        "yes" if percentile(gap, 90) <= 0.020 else "no",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="a short text")
    args = parser.parse_args()
    text = QUICK_TEXT if args.quick else TEXT
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        log = root / "played"
        install_fake_player(root / "bin", log)
        env = {
            **os.environ,
            "PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "OUTPUT_DIR": str(root / "out"),
            "HOME": str(root),
        }
        emulator, url = start_emulator(env)
        try:
            os.environ.update(
                PATH=env["PATH"],
                OUTPUT_DIR=env["OUTPUT_DIR"],
                DASHSCOPE_API_KEY=KEY,
                DASHSCOPE_REALTIME_URL=url,
                HOME=str(root),
            )
            delta = FirstDelta()
            engine_logger = logging.getLogger("alicloud_tts_realtime.connection")
            engine_logger.setLevel(logging.DEBUG)
            engine_logger.propagate = False  # no debug lines on stderr
            engine_logger.addHandler(delta)
            (root / "out").mkdir()
            mcp_rows = bench_mcp(args.runs, text, log, delta)
            cli_rows = bench_cli(args.runs, text, log, root / "out", delta)
        finally:
            emulator.terminate()
            emulator.communicate(timeout=10)
    print(f"{versions()}; {args.runs} runs each after one warm-up; text {text!r}")
    print_table(
        "first PCM byte at the player's stdin vs the same call's first audio (emulator paced: 300 ms, rtf 0.5)",
        ["path", "first audio p50", "first byte p50", "gap p50", "gap p90", "gap max", "gap p90 <= 20 ms"],
        [summary("mcp tools/call", mcp_rows), summary("cli speak --play", cli_rows)],
    )


if __name__ == "__main__":
    main()

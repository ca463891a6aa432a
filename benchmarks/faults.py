"""Time to fail for each emulator fault: ``speak`` with the realtime and the fallback engine.

Usage: ``python benchmarks/faults.py [--timeout 5]``. For each fault the emulator injects (slow
first audio, refused upgrade, throttle, drop before and after audio, unknown model), runs the
CLI's ``speak`` in process against a fresh emulator and records the exit code, the seconds until
it returned, the realtime upgrades the emulator saw and the first words of the error line. The
slow-service case uses ``--timeout`` (the CLI default is 120 s). Prints one JSON line. Not a timed test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from typing import Any

import anyio
import anyio.to_thread

from alicloud_tts_realtime.cli import main as cli
from alicloud_tts_realtime.emulator import EmulatorConfig, serve_emulator

FAULTS: dict[str, dict[str, Any]] = {
    "slow first audio (25 s)": {"latency_ms": 25000},
    "upgrade refused 503": {"reject_status": 503},
    "throttled (close 1011)": {"throttle": True},
    "drop before audio": {"drop_after_chunks": 0},
    "drop after 2 chunks": {"drop_after_chunks": 2},
    "unknown model": {},
}


async def one(name: str, fault: dict[str, Any], engine: str, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with serve_emulator(EmulatorConfig(audio="signal", **fault), host="127.0.0.1", port=0) as emulator:
            os.environ.update(
                DASHSCOPE_API_KEY="sk-emulator",
                DASHSCOPE_REALTIME_URL=emulator.url,
                DASHSCOPE_HTTP_BASE_URL=emulator.http_base_url,
                OUTPUT_DIR=tmp,
            )
            argv = ["speak", "Hello there.", "--engine", engine, "--timeout", str(timeout)]
            if name == "unknown model":
                argv += ["--model", "qwen3-tts-flash-realtime-2099-01-01"]
            err = io.StringIO()
            started = time.perf_counter()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = await anyio.to_thread.run_sync(cli, argv)
            seconds = time.perf_counter() - started
            line = next((text for text in err.getvalue().splitlines() if text.startswith("error:")), "")
            return {
                "fault": name,
                "engine": engine,
                "exit": code,
                "seconds": round(seconds, 2),
                "realtime_upgrades": emulator.stats.upgrade_requests,
                "error": line[:110],
            }


async def run(timeout: float) -> list[dict[str, Any]]:
    return [
        await one(name, fault, engine, timeout) for name, fault in FAULTS.items() for engine in ("realtime", "fallback")
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps({"faults": anyio.run(run, args.timeout)}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

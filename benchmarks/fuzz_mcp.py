"""Fuzz the MCP tools' inputs: a bounded, seeded loop of hostile arguments through a real MCP client.

Usage: ``python benchmarks/fuzz_mcp.py [--calls 2000] [--seed 14]``. The server runs in process
against the emulator (``audio="signal"``, a fake key), with the SDK's in-memory client, and
every call's result and every log line are checked:

- crash: a call that raised in the client, or answered with the generic internal-error sentence
  (a lone surrogate the client itself cannot serialize is counted as ``unsendable``: over stdio
  it arrives as a ``\ud800`` escape, answered with -32700);
- leak: the API key in a result or a log line;
- long: an error sentence over 400 characters (a value echoed without a limit);
- raw control: a NUL, newline or other control character in an error sentence or a log line.

Prints one JSON line with the counts (and a few examples of each failure). Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from alicloud_tts_realtime.emulator import EmulatorConfig, serve_emulator
from alicloud_tts_realtime.mcp_server import ServerOptions, build_server
from alicloud_tts_realtime.service import RetryOptions
from alicloud_tts_realtime.settings import load_settings

KEY = "sk-fuzz-0123456789abcdef"
ARGUMENTS = ("text", "voice", "instruction", "sample_rate", "model", "language_type", "output", "filename", "play")
NASTY = [
    "\x00", "\n", "\r\n", "\u200b", "\ufeff", "\ud800", "\udfff", "\u202e", "\x1b[31m", "..", "/", "\\", "%s", "%(x)s",
    "{0}", "'", '"', "<script>", "\u3000", "你好", "🙂", "\U0010ffff", "a" * 300, " ", "\t", KEY[:6],
]  # fmt: skip
GENERIC = "internal error"


def hostile_string(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.15:
        return rng.choice(NASTY) * rng.choice((1, 2, 10, 1000, 100_000))
    if kind < 0.3:
        return "".join(chr(rng.randrange(0, 0x110000)) for _ in range(rng.randrange(1, 40)))
    if kind < 0.45:
        return "".join(rng.choice(NASTY) for _ in range(rng.randrange(1, 8)))
    if kind < 0.6:
        return rng.choice(("Cherry", "Ethan", "cherry", "Ono Anna", "qwen3-tts-flash-realtime", "English", "file"))
    if kind < 0.7:
        return "x" * rng.choice((81, 500, 5001, 1_000_000))
    return "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(0, 60)))


def hostile_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.random()
    if kind < 0.55:
        return hostile_string(rng)
    if kind < 0.65:
        return rng.choice((0, -1, 16000, 24000, 2**63, -(2**63), 10**30))
    if kind < 0.72:
        return rng.choice((0.5, 1e308, -0.0, 24000.0))
    if kind < 0.78:
        return rng.choice((True, False, None))
    if kind < 0.9 and depth < 3:
        return [hostile_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    if depth < 3:
        return {hostile_string(rng)[:20]: hostile_value(rng, depth + 1) for _ in range(rng.randrange(0, 3))}
    return None


def hostile_arguments(rng: random.Random) -> dict[str, Any]:
    args: dict[str, Any] = {"text": "Hi.", "voice": "Cherry"}
    for name in rng.sample(ARGUMENTS, rng.randrange(1, 4)):
        if rng.random() < 0.1:
            args.pop(name, None)
        else:
            args[name] = hostile_value(rng)
    if rng.random() < 0.1:
        args[hostile_string(rng)[:50] or "x"] = hostile_value(rng)
    args["play"] = False  # never start a player on this machine
    if args.get("output") not in ("file", "both") and "filename" in args:
        args["output"] = "file"
    return args


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def bad_chars(text: str) -> bool:
    return any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in text)


async def fuzz(calls: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    lines = Lines()
    logging.getLogger("alicloud_tts_realtime").addHandler(lines)
    logging.getLogger("alicloud_tts_realtime").setLevel(logging.DEBUG)
    logging.getLogger("alicloud_tts_realtime").propagate = False
    logging.getLogger("mcp").setLevel(logging.ERROR)
    counts = {
        "inputs": 0,
        "crashes": 0,
        "leaks": 0,
        "long": 0,
        "raw_control": 0,
        "ok": 0,
        "refused": 0,
        "unsendable": 0,
    }
    examples: dict[str, list[str]] = {"crashes": [], "leaks": [], "long": [], "raw_control": []}

    def note(kind: str, what: str) -> None:
        counts[kind] += 1
        if len(examples[kind]) < 3:
            examples[kind].append(what[:200])

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        config = EmulatorConfig(audio="signal", api_key=KEY)
        async with serve_emulator(config, host="127.0.0.1", port=0) as emulator:
            env = {"DASHSCOPE_API_KEY": KEY, "DASHSCOPE_REALTIME_URL": emulator.url, "OUTPUT_DIR": tmp}
            options = ServerOptions(retry=RetryOptions(max_retries=0), deadline_seconds=10)
            server = build_server(load_settings(env, home=Path(tmp)), options)
            async with Client(server) as client:
                for i in range(calls):
                    tool = "tts_voices" if i % 10 == 9 else "tts_realtime"
                    args = hostile_arguments(rng) if tool == "tts_realtime" else {"model": hostile_value(rng)}
                    counts["inputs"] += 1
                    try:
                        result = await client.call_tool(tool, args)
                    except UnicodeEncodeError:  # the client cannot serialize a lone surrogate: never sent
                        counts["unsendable"] += 1
                        continue
                    except Exception as exc:  # counting is the point
                        note("crashes", f"{tool} {ascii(args)[:120]}: {type(exc).__name__}: {exc}")
                        continue
                    text = " ".join(getattr(block, "text", "") for block in result.content)
                    if KEY in text or KEY in json.dumps(result.structured_content or {}):
                        note("leaks", text)
                    if result.is_error:
                        counts["refused"] += 1
                        if GENERIC in text:
                            note("crashes", f"{args!r:.150}: {text}")
                        if len(text) > 400:
                            note("long", f"{len(text)} chars: {text[:150]}")
                        if bad_chars(text):
                            note("raw_control", repr(text[:150]))
                    else:
                        counts["ok"] += 1
    for line in lines.lines:
        if KEY in line:
            note("leaks", line)
        if bad_chars(line) or len(line) > 2000:
            note("raw_control", repr(line[:150]))
    counts["log_lines"] = len(lines.lines)
    return {"fuzz_mcp": counts, "seconds": round(time.perf_counter() - started, 1), "seed": seed, "examples": examples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    report = anyio.run(fuzz, args.calls, args.seed)
    print(json.dumps(report, ensure_ascii=True))
    bad = report["fuzz_mcp"]
    return 1 if bad["crashes"] or bad["leaks"] or bad["long"] or bad["raw_control"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""A fake command-line player for tests and benchmarks: a small Python script put on ``PATH``.

It reads its stdin to the end, like ``paplay --raw`` and friends, and records what it got in
files named after its PID next to ``log``:

- ``<log>.<pid>.started``: JSON ``{"argv", "pid", "t"}`` as soon as it runs;
- ``<log>.<pid>.first``: the ``time.monotonic()`` of its first byte (same clock as the test's);
- ``<log>.<pid>.json``: at the end of its input, ``{"argv", "first", "bytes", "end"}``, and
  ``<log>.<pid>.pcm`` with every byte, in order.

``delay`` makes it slow (seconds slept per read of at most ``read_size`` bytes); ``linger`` keeps it
running after its input ended (a player still sounding the tail).
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SCRIPT = """\
import json, os, sys, time
log, delay, linger, size = {log!r}, {delay!r}, {linger!r}, {size!r}
pid = os.getpid()

def dump(suffix, data):
    tmp = f"{{log}}.{{pid}}.{{suffix}}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, f"{{log}}.{{pid}}.{{suffix}}")

dump("started", json.dumps({{"argv": sys.argv, "pid": pid, "t": time.monotonic()}}).encode())
first = None
data = bytearray()
while True:
    block = os.read(0, size)
    if not block:
        break
    if first is None:
        first = time.monotonic()
        dump("first", repr(first).encode())
    data += block
    if delay:
        time.sleep(delay)
dump("pcm", bytes(data))
dump("json", json.dumps({{"argv": sys.argv, "first": first, "bytes": len(data), "end": time.monotonic()}}).encode())
if linger:
    time.sleep(linger)
"""


@dataclass
class PlayerRun:
    pid: int
    argv: list[str]
    started: float
    first: float | None
    done: bool
    pcm: bytes
    bytes: int
    end: float | None


def install_fake_player(
    bin_dir: Path, log: Path, *, name: str = "paplay", delay: float = 0.0, linger: float = 0.0, read_size: int = 65536
) -> Path:
    """Write the fake player as ``bin_dir/name`` (executable) and return its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / name
    body = SCRIPT.format(log=str(log), delay=delay, linger=linger, size=read_size)
    script.write_text(f"#!{sys.executable}\n{body}")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def install_shell_player(bin_dir: Path, name: str, body: str) -> Path:
    """Write a player of a few shell lines (``body``, after ``#!/bin/sh``) as ``bin_dir/name``, executable."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\n{body}")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def player_runs(log: Path) -> list[PlayerRun]:
    """Every run of the fake player that logs to ``log``, in the order they started."""
    runs = []
    for started in log.parent.glob(f"{log.name}.*.started"):
        info = json.loads(started.read_text())
        pid = info["pid"]
        first_file = log.parent / f"{log.name}.{pid}.first"
        done_file = log.parent / f"{log.name}.{pid}.json"
        pcm_file = log.parent / f"{log.name}.{pid}.pcm"
        done = done_file.exists()
        pcm = pcm_file.read_bytes() if done else b""
        end = json.loads(done_file.read_text())["end"] if done else None
        runs.append(
            PlayerRun(
                pid=pid,
                argv=info["argv"],
                started=info["t"],
                first=float(first_file.read_text()) if first_file.exists() else None,
                done=done,
                pcm=pcm,
                bytes=len(pcm),
                end=end,
            )
        )
    return sorted(runs, key=lambda run: run.started)


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def wait_until(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


async def until(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    """Like :func:`wait_until`, for async tests: sleeps without blocking the loop."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())

"""Progress of a batch on stderr: a progress bar on a terminal, a plain line every 10 s elsewhere.

The bar is ``rich``'s (already installed with the SDK): items done of total, failures, seconds of
audio made, characters billed and the ETA. It is refreshed from the event loop rather than rich's
refresh thread. Off a terminal (a log file, CI, an agent's pipe) a bar would be noise, so one line
every ``interval`` seconds says the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from typing import IO, Any

from .batch import BatchTally

__all__ = ["eta_seconds", "progress_line", "show_progress"]

REFRESH_SECONDS = 0.25


def eta_seconds(tally: BatchTally) -> float | None:
    """Seconds left at the pace so far (items skipped as already done do not count), or None."""
    worked = tally.ok + tally.failed
    if tally.total is None or worked == 0:
        return None
    left = tally.total - tally.done
    return max(0.0, left * (time.monotonic() - tally.started) / worked)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def progress_line(tally: BatchTally) -> str:
    """``batch: 120/1000 done (3 failed, 10 skipped), 340.5 s of audio, 12000 characters, 60 s elapsed, ETA 8 min``."""
    total = "?" if tally.total is None else str(tally.total)
    elapsed = time.monotonic() - tally.started
    return (
        f"batch: {tally.done}/{total} done ({tally.failed} failed, {tally.skipped} skipped), "
        f"{tally.audio_ms / 1000:.1f} s of audio, {tally.characters} characters, "
        f"{_duration(elapsed)} elapsed, ETA {_duration(eta_seconds(tally))}"
    )


@contextlib.asynccontextmanager
async def show_progress(
    tally: BatchTally, *, stream: IO[str] | None = None, tty: bool | None = None, interval: float = 10.0
) -> AsyncIterator[None]:
    """Show the progress of ``tally`` on ``stream`` (stderr) while the block runs.

    Args:
        tally: The running totals; the block updates it.
        stream: Where to write; default ``sys.stderr``.
        tty: Force the bar (True) or the lines (False); default: whether ``stream`` is a terminal.
        interval: Seconds between lines off a terminal.
    """
    stream = stream or sys.stderr
    if tty is None:
        tty = bool(getattr(stream, "isatty", lambda: False)())
    if not tty:
        task = asyncio.ensure_future(_lines(tally, stream, interval))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(file=stream)
    bar = Progress(
        TextColumn("batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed · {task.fields[audio]} s audio · {task.fields[chars]} chars"),
        TextColumn("· ETA {task.fields[eta]}"),
        console=console,
        auto_refresh=False,  # refreshed from the loop below: no refresh thread
        transient=False,
    )
    task_id = bar.add_task("batch", total=tally.total, failed=0, audio="0.0", chars=0, eta="?")

    def fields() -> dict[str, Any]:
        return {
            "completed": tally.done,
            "failed": tally.failed,
            "audio": f"{tally.audio_ms / 1000:.1f}",
            "chars": tally.characters,
            "eta": _duration(eta_seconds(tally)),
        }

    async def refresh() -> None:
        while True:
            bar.update(task_id, **fields())
            bar.refresh()
            await asyncio.sleep(REFRESH_SECONDS)

    handlers = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler and h.stream is stream]
    with bar:
        # rich swaps sys.stderr for a proxy that prints above the bar; log lines (retries,
        # throttling) go through it too rather than through the bar.
        moved = [h for h in handlers if sys.stderr is not stream]
        for handler in moved:
            handler.setStream(sys.stderr)
        task = asyncio.ensure_future(refresh())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            bar.update(task_id, **fields())
            bar.refresh()
            for handler in moved:
                handler.setStream(stream)


async def _lines(tally: BatchTally, stream: IO[str], interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        print(progress_line(tally), file=stream, flush=True)

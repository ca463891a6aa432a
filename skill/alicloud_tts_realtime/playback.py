"""Local playback of a WAV file on the machine that runs the package, without waiting for it.

The MCP server's ``play: true`` uses this: it finds the first known command-line player on
``PATH`` and starts it in its own session, with no stdin and no stdout (the stdio MCP transport
owns stdout; a player that printed there would corrupt the protocol stream). A background asyncio
task reaps the player when it exits, so nothing waits for the sound to end and no zombie is left
behind; the caller owns that task (no threads, no module-level registry).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from collections.abc import MutableSet
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NO_PLAYER", "PLAYERS", "PlayerCommand", "find_player", "play_in_background"]

logger = logging.getLogger(__name__)

# Tried in order: macOS, PulseAudio/PipeWire, ALSA, ffmpeg, SoX. Flags keep them quiet and make
# ffplay exit at the end of the file without opening a window.
PLAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("afplay", ()),
    ("paplay", ()),
    ("aplay", ("-q",)),
    ("ffplay", ("-autoexit", "-nodisp", "-loglevel", "quiet")),
    ("play", ("-q",)),
)
NO_PLAYER = "no audio player found (install alsa-utils or ffmpeg)"
# How long the result waits to catch a player that fails at once (no audio device, no server).
GRACE_S = 0.3


@dataclass(frozen=True)
class PlayerCommand:
    """A player found on ``PATH``.

    Attributes:
        name: The player's name, e.g. ``aplay``.
        argv: The command without the file argument.
    """

    name: str
    argv: tuple[str, ...]


def find_player(search_path: str | None = None) -> PlayerCommand | None:
    """Return the first known player on ``search_path`` (default: ``PATH``), or None."""
    for name, flags in PLAYERS:
        found = shutil.which(name, path=search_path)
        if found:
            return PlayerCommand(name, (found, *flags))
    return None


async def play_in_background(
    wav: Path,
    reapers: MutableSet[asyncio.Task[object]],
    *,
    delete_after: bool = False,
    search_path: str | None = None,
) -> str:
    """Start playing ``wav`` and return at once with a short report for the caller.

    Args:
        wav: The WAV file to play.
        reapers: Where the task that waits for the player is kept until it ends (a task that
            nothing references may be garbage-collected mid-flight).
        delete_after: Remove the file once the player exits (for temporary files).
        search_path: Directories to search instead of ``PATH``.

    Returns:
        ``"started with aplay"``; ``"played with aplay"`` when it finished within :data:`GRACE_S`;
        ``"aplay failed at once (exit status 1): …"`` when it gave up that fast (typically no audio
        device); :data:`NO_PLAYER`; or ``"could not start aplay: …"``. Never raises for a missing
        or failing player: playback is a convenience, the audio is already saved.
    """
    player = find_player(search_path)
    if player is None:
        if delete_after:
            wav.unlink(missing_ok=True)
        return NO_PLAYER
    try:
        process = await asyncio.create_subprocess_exec(
            *player.argv,
            str(wav),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not hit by the client's Ctrl-C
        )
    except OSError as exc:
        if delete_after:
            wav.unlink(missing_ok=True)
        return f"could not start {player.name}: {exc.strerror or type(exc).__name__}"
    except BaseException:  # cancelled while starting it
        if delete_after:
            wav.unlink(missing_ok=True)
        raise

    async def reap() -> int:
        try:
            code = await process.wait()
            if code:
                logger.info("%s exited with status %d", player.name, code)
            return code
        finally:
            if delete_after:
                wav.unlink(missing_ok=True)

    # The reaper exists before anything is awaited, so a cancelled caller still leaves it to wait
    # for the player and delete a temporary file.
    task = asyncio.get_running_loop().create_task(reap(), name=f"reap-{player.name}")
    reapers.add(task)
    task.add_done_callback(reapers.discard)
    await asyncio.wait({task}, timeout=GRACE_S)  # does not cancel the task
    if task.done() and not task.cancelled() and task.exception() is None:
        code = task.result()
        if code == 0:
            return f"played with {player.name}"
        return (
            f"{player.name} failed at once (exit status {code}): the server's machine may have no audio device; "
            "play the saved file elsewhere"
        )
    logger.info("playing %s with %s", wav.name, player.name)
    return f"started with {player.name}"

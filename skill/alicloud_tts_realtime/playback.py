"""Local playback on the machine that runs the package, from the first chunk.

A :class:`Playback` is an :class:`AudioSink` (live: what it got was heard and cannot be taken back).
:meth:`PlayerFinder.open` picks one, in this order:

1. a command-line player that reads raw PCM16 mono on stdin (mode ``stream``): ``paplay``,
   ``pw-cat``, ``aplay``, ``ffplay`` (its rate and mono options probed once per finder) or SoX
   ``play``: :class:`PipePlayback`, which falls through to the next one found when a player fails
   at its start (no sound server, no device);
2. PortAudio through ``sounddevice``, when the optional extra ``play`` is installed (mode
   ``stream``): :class:`PortAudioPlayback`;
3. a file player (``afplay``, then the same players given a file) on the finished WAV (mode
   ``file``): :class:`FilePlayback`.

Backpressure: :meth:`Playback.write` never waits for the player. Chunks go to an in-memory buffer
(at most the audio itself) that a task of the playback's own feeds to the player, so a slow player
never slows the synthesis, and the socket never waits on the speaker.

Players run in their own session and process group, with stdout and stderr discarded (the stdio
MCP transport owns stdout), and :meth:`Playback.stop` ends the whole group: nothing outlives its
owner. Nothing here is module state; the owner (the CLI's call, the MCP server's
:class:`~.speaker.Speaker`) holds the finder and the playbacks.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from .audio import wav_bytes
from .sinks import AudioSink

__all__ = [
    "NO_PLAYER",
    "STREAM_PLAYERS",
    "AudioSink",
    "FilePlayback",
    "PipePlayback",
    "Playback",
    "PlaybackMode",
    "PlayerFinder",
    "PortAudioPlayback",
]

logger = logging.getLogger(__name__)

PlaybackMode = Literal["stream", "file"]
# Players that take raw PCM on stdin, in the order they are tried.
STREAM_PLAYERS = ("paplay", "pw-cat", "aplay", "ffplay", "play")
# Players given the finished WAV, tried when no stdin player is found; flags keep them quiet.
FILE_PLAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("afplay", ()),
    ("paplay", ()),
    ("aplay", ("-q",)),
    ("ffplay", ("-autoexit", "-nodisp", "-loglevel", "quiet")),
    ("play", ("-q",)),
)
NO_PLAYER = "no audio player found (install pulseaudio-utils, alsa-utils, ffmpeg or sox; or the 'play' extra)"
# How long stop() lets a player end on SIGTERM before SIGKILL.
STOP_GRACE_S = 1.0
# A stdin player that exits with an error this soon after it started could not play here (paplay
# with no PulseAudio server, aplay with no ALSA device): the next stdin player found gets the audio
# from its start. A player that fails later may have been heard, and nothing is played twice.
START_WINDOW_S = 0.5


class Playback(AudioSink):
    """Plays PCM16 mono as it is written, from its own task; see the module docstring.

    Lifecycle: ``write`` any time (buffered until :meth:`start`), :meth:`start` the player,
    :meth:`close` when the input is complete (the player finishes what it has), :meth:`finished`
    to wait for the end, :meth:`stop` (or ``abort``) to end it at once.

    Attributes:
        player: The player's name, e.g. ``paplay`` or ``sounddevice``.
        mode: ``stream`` (heard from the first chunk) or ``file`` (the finished WAV).
        first_byte_at: ``time.monotonic()`` when the first PCM went to the player, else None.
        bytes_played: PCM bytes handed to the player so far.
        error: Why the player failed (it could not start, or exited with an error), else None.
        stopped: True once :meth:`stop` was called.
    """

    live: ClassVar[bool] = True
    mode: ClassVar[PlaybackMode] = "stream"

    def __init__(self, player: str, sample_rate: int) -> None:
        self.player = player
        self.sample_rate = sample_rate
        self.first_byte_at: float | None = None
        self.bytes_played = 0
        self.error: str | None = None
        self.stopped = False
        self._buffer: collections.deque[bytes] = collections.deque()
        self._more = asyncio.Event()
        self._eof = False
        self._task: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None

    @property
    def started(self) -> bool:
        return self._task is not None

    @property
    def done(self) -> bool:
        """True once the player ended (or was stopped, or never could start)."""
        return self._done.is_set()

    async def write(self, pcm: bytes) -> None:
        if self.stopped or self.done or not pcm:
            return
        self._buffer.append(pcm)
        self._more.set()

    async def close(self) -> None:
        self._eof = True
        self._more.set()
        if self.stopped and not self.started:
            self._done.set()

    async def abort(self) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the player and the task that feeds it; returns at once."""
        if self.started or self.stopped:
            return
        self._task = asyncio.get_running_loop().create_task(self._guarded_run(), name=f"play-{self.player}")

    async def finished(self) -> None:
        """Wait until the player ended (it played everything, failed, or was stopped)."""
        await self._done.wait()

    async def stop(self) -> None:
        """End the playback now: the player and its process group go, the buffer is dropped."""
        self.stopped = True
        self._buffer.clear()
        self._more.set()
        if self._task is None:
            self._done.set()
            return
        if not self._task.done():
            self._task.cancel()
        # The task's own cleanup ends the player; wait for it (a cancelled caller leaves it running).
        await asyncio.wait({self._task})

    def kill_now(self) -> None:
        """SIGKILL the player's process group at once (a signal handler: the process is exiting)."""
        self.stopped = True
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    async def _guarded_run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # a playback failure never fails the synthesis
            logger.warning("playback with %s failed: %s", self.player, exc)
            self.error = self.error or f"{self.player} failed: {exc}"
        finally:
            self._buffer.clear()
            self._done.set()

    async def _chunks(self) -> Any:
        """Yield the buffered chunks in order until the input is complete."""
        while True:
            while self._buffer:
                yield self._buffer.popleft()
            if self._eof or self.stopped:
                return
            self._more.clear()
            await self._more.wait()

    @abc.abstractmethod
    async def _run(self) -> None:
        """Play everything written until :meth:`close`; clean up when cancelled."""


async def _start_process(argv: tuple[str, ...], *, stdin: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopped as a whole, untouched by the client's Ctrl-C
    )


async def _end_process(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers, and reap the process."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_S)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    else:  # the leader is gone; anything it left in its group goes too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


class PipePlayback(Playback):
    """A command-line player fed raw PCM on its stdin (mode ``stream``).

    ``fallbacks`` are the other stdin players found, tried in order when one fails at its start
    (:data:`START_WINDOW_S`); ``player``, ``argv``, ``first_byte_at`` and ``bytes_played`` then
    describe the one that plays. ``argv_for(name, path, rate)`` builds a fallback's command line
    when it is needed (:meth:`PlayerFinder.open` passes its own).
    """

    def __init__(
        self,
        player: str,
        argv: tuple[str, ...],
        sample_rate: int,
        *,
        fallbacks: tuple[tuple[str, str], ...] = (),
        argv_for: Callable[[str, str, int], Awaitable[tuple[str, ...]]] | None = None,
    ) -> None:
        super().__init__(player, sample_rate)
        self.argv = argv
        self.fallbacks = fallbacks if argv_for is not None else ()
        self._argv_for = argv_for

    async def _run(self) -> None:
        errors: list[str] = []
        for index in range(len(self.fallbacks) + 1):
            if index:
                name, path = self.fallbacks[index - 1]
                assert self._argv_for is not None
                self.player, self.argv = name, await self._argv_for(name, path, self.sample_rate)
            self.error = None
            fed = await self._play(retain=index < len(self.fallbacks))
            if fed is None or self.stopped:
                if self.error and errors:  # the last one failed too: say why each did
                    self.error = "; ".join([*errors, self.error])
                return
            errors.append(self.error or f"{self.player} failed")
            logger.info("%s; trying %s", errors[-1], self.fallbacks[index][0])
            self._buffer.extendleft(reversed(fed))  # the next player starts from the beginning
            self.first_byte_at, self.bytes_played = None, 0

    async def _play(self, *, retain: bool) -> list[bytes] | None:
        """Feed the player; return what it was fed if it failed at its start (``retain``), else None."""
        try:
            process = await _start_process(self.argv, stdin=subprocess.PIPE)
        except OSError as exc:
            self.error = f"could not start {self.player}: {exc.strerror or type(exc).__name__}"
            return [] if retain else None
        self._process = process
        started = time.monotonic()
        exited: list[float] = []
        waiter = asyncio.ensure_future(process.wait())
        waiter.add_done_callback(lambda _: exited.append(time.monotonic()))
        fed: list[bytes] | None = [] if retain else None
        try:
            stdin = process.stdin
            assert stdin is not None
            try:
                async for chunk in self._chunks():
                    if fed is not None:  # kept until the player has outlived its start
                        if process.returncode is None and time.monotonic() - started > START_WINDOW_S:
                            fed = None
                        else:
                            fed.append(chunk)
                    if self.first_byte_at is None:
                        self.first_byte_at = time.monotonic()
                    stdin.write(chunk)
                    self.bytes_played += len(chunk)
                    await stdin.drain()  # waits on the player only: writers never wait here
                stdin.close()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    await stdin.wait_closed()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the player went away; its exit status says why
            code = await waiter
            if code and not self.stopped:
                self.error = f"{self.player} exited with status {code} (the machine may have no audio device)"
                logger.info("%s", self.error)
                if fed is not None and exited and exited[0] - started <= START_WINDOW_S:
                    return fed
            return None
        finally:
            waiter.cancel()
            await _end_process(process)


class FilePlayback(Playback):
    """A file player on the finished WAV (mode ``file``): a temporary copy, deleted afterwards."""

    mode: ClassVar[PlaybackMode] = "file"

    def __init__(self, player: str, argv: tuple[str, ...], sample_rate: int) -> None:
        super().__init__(player, sample_rate)
        self.argv = argv

    async def _run(self) -> None:
        pcm = [chunk async for chunk in self._chunks()]
        if self.stopped or not pcm:
            return
        loop = asyncio.get_running_loop()
        target = await loop.run_in_executor(None, _temporary_wav, wav_bytes(pcm, self.sample_rate))
        try:
            try:
                process = await _start_process((*self.argv, str(target)), stdin=subprocess.DEVNULL)
            except OSError as exc:
                self.error = f"could not start {self.player}: {exc.strerror or type(exc).__name__}"
                return
            self._process = process
            self.first_byte_at = time.monotonic()
            self.bytes_played = sum(len(chunk) for chunk in pcm)
            try:
                code = await process.wait()
                if code and not self.stopped:
                    self.error = f"{self.player} exited with status {code} (the machine may have no audio device)"
            finally:
                await _end_process(process)
        finally:
            target.unlink(missing_ok=True)


class PortAudioPlayback(Playback):
    """PortAudio through ``sounddevice`` (the ``play`` extra; macOS, Windows): mode ``stream``.

    PortAudio pulls audio from its own callback thread; the callback takes whole chunks from a
    thread-safe deque and never blocks, so the event loop never waits on it.
    """

    async def _run(self) -> None:
        import sounddevice  # type: ignore[import-not-found,unused-ignore]

        pending: collections.deque[bytes] = collections.deque()
        leftover = bytearray()
        drained = asyncio.Event()
        loop = asyncio.get_running_loop()
        state = {"eof": False}

        def callback(outdata: Any, frames: int, _time: Any, _status: Any) -> None:
            wanted = frames * 2
            while len(leftover) < wanted and pending:
                leftover.extend(pending.popleft())
            n = min(wanted, len(leftover))
            outdata[:n] = bytes(leftover[:n])
            outdata[n:wanted] = b"\x00" * (wanted - n)
            del leftover[:n]
            if state["eof"] and not pending and not leftover:
                loop.call_soon_threadsafe(drained.set)

        stream = sounddevice.RawOutputStream(samplerate=self.sample_rate, channels=1, dtype="int16", callback=callback)
        stream.start()
        try:
            async for chunk in self._chunks():
                if self.first_byte_at is None:
                    self.first_byte_at = time.monotonic()
                pending.append(chunk)
                self.bytes_played += len(chunk)
            state["eof"] = True
            await drained.wait()
        finally:
            stream.stop()
            stream.close()


def _temporary_wav(data: bytes) -> Path:
    """Write ``data`` to a new temporary ``tts-play-*.wav``; nothing is left if the write fails."""
    fd, name = tempfile.mkstemp(prefix="tts-play-", suffix=".wav")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


class PlayerFinder:
    """Finds the player to use; probes ``ffplay``'s options once and remembers them.

    One finder per owner (the CLI's call, the MCP server's speaker): nothing is cached in the module.

    Args:
        search_path: Directories to search instead of ``PATH`` (read at each :meth:`open`).
        portaudio: Whether to try ``sounddevice``; default: when it is installed.
    """

    def __init__(self, search_path: str | None = None, *, portaudio: bool | None = None) -> None:
        self._search_path = search_path
        self._portaudio = portaudio
        self._ffplay_style: dict[str, str] = {}  # ffplay path -> "old" (-ar/-ac) or "new" (-ch_layout)

    async def open(self, sample_rate: int) -> Playback | None:
        """A new, not yet started playback for ``sample_rate`` Hz, or None when there is no player."""
        stdin_players = [(name, shutil.which(name, path=self._search_path)) for name in STREAM_PLAYERS]
        usable = tuple((name, path) for name, path in stdin_players if path)
        if usable:
            (name, path), fallbacks = usable[0], usable[1:]
            argv = await self._stream_argv(name, path, sample_rate)
            return PipePlayback(name, argv, sample_rate, fallbacks=fallbacks, argv_for=self._stream_argv)
        portaudio = self._portaudio
        if portaudio is None:
            portaudio = importlib.util.find_spec("sounddevice") is not None
        if portaudio:
            return PortAudioPlayback("sounddevice", sample_rate)
        for name, flags in FILE_PLAYERS:
            found = shutil.which(name, path=self._search_path)
            if found:
                return FilePlayback(name, (found, *flags), sample_rate)
        return None

    async def _stream_argv(self, name: str, path: str, rate: int) -> tuple[str, ...]:
        if name == "paplay":
            return (path, "--raw", "--format=s16le", f"--rate={rate}", "--channels=1")
        if name == "pw-cat":
            return (path, "--playback", "--format", "s16", "--rate", str(rate), "--channels", "1", "-")
        if name == "aplay":
            return (path, "-q", "-t", "raw", "-f", "S16_LE", "-r", str(rate), "-c", "1", "-")
        if name == "ffplay":
            if path not in self._ffplay_style:
                self._ffplay_style[path] = await _probe_ffplay(path)
            if self._ffplay_style[path] == "new":
                layout: tuple[str, ...] = ("-sample_rate", str(rate), "-ch_layout", "mono")
            else:
                layout = ("-ar", str(rate), "-ac", "1")
            return (path, "-f", "s16le", *layout, "-nodisp", "-autoexit", "-loglevel", "quiet", "-i", "-")
        return (path, "-q", "-t", "raw", "-e", "signed", "-b", "16", "-r", str(rate), "-c", "1", "-")


async def _probe_ffplay(path: str) -> str:
    """``new`` when this ffplay's raw demuxer takes ``ch_layout`` but no longer ``channels`` (FFmpeg 7)."""
    try:
        process = await asyncio.create_subprocess_exec(
            path,
            "-hide_banner",
            "-h",
            "demuxer=s16le",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError:
        return "old"
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 5)
    except asyncio.TimeoutError:
        await _end_process(process)
        return "old"
    words = {line.split()[0] for line in out.decode("utf-8", "replace").splitlines() if line.strip()}
    return "new" if "-ch_layout" in words and "-channels" not in words else "old"

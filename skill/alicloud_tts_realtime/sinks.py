"""Where audio goes as it arrives: the :class:`AudioSink` interface and the sinks the package feeds.

:func:`~.service.synthesize` writes every PCM chunk to its sinks in order and never holds the
whole audio itself. A sink is *live* when what it receives reaches a listener at once and cannot
be taken back (progress notifications, playback); the service retries a failed attempt only while
no audio has reached a live sink, and rolls the other sinks back to where the attempt started.

Sinks here:

- :class:`WavFileSink`, :class:`PcmFileSink`, :class:`EncodedFileSink` (MP3, Ogg Opus, FLAC via
  ``soundfile``): stream to a hidden ``.tts-*.part`` file next to the target, in bounded worker
  threads and in batches of :data:`FLUSH_BYTES` (a slow disk never stalls the event loop), and
  rename it into place at :meth:`~AudioSink.close`, on the loop, only if the call was not
  cancelled. :func:`open_file_sink` picks one for an :class:`~.formats.AudioFormat`.
- :class:`ChunksSink`: base64 chunks for the response, encoded as they arrive.
- :class:`CallbackSink`: awaits a callback with each :class:`~.models.AudioChunk` (live).
- :class:`TeeSink`: feeds several sinks at once.

Confinement (issue 14, item 2): with ``root``, a file sink creates its folders and its file
relative to an open descriptor of ``root``, walking each folder with ``O_NOFOLLOW``, and renames
inside the descriptor of the final folder, so a folder swapped for a symlink during the synthesis
cannot send the file elsewhere: the write is refused instead. Platforms without ``dir_fd``
(Windows) re-check the real path just before the rename.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import secrets
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from .audio import decode_chunk, encode_kept_chunk
from .errors import InvalidStateError, OutputError
from .formats import AudioFormat
from .models import AudioChunk

__all__ = [
    "FLUSH_BYTES",
    "AudioSink",
    "CallbackSink",
    "ChunksSink",
    "EncodedFileSink",
    "FileSink",
    "PcmFileSink",
    "TeeSink",
    "WavFileSink",
    "open_file_sink",
]

# About 5 s of 24 kHz audio per worker-thread hop: few hops, little held in memory.
FLUSH_BYTES = 256 * 1024
_HAS_DIR_FD = (
    hasattr(os, "O_DIRECTORY")
    and hasattr(os, "O_NOFOLLOW")
    and {os.open, os.mkdir, os.rename, os.unlink, os.rmdir} <= os.supports_dir_fd
)


class AudioSink(abc.ABC):
    """A destination for PCM16 LE mono audio, fed in order, then closed or aborted.

    ``write`` the chunks, then ``close()`` once the input is complete (a file is finalized and
    renamed into place), or ``abort()`` to discard everything (idempotent; nothing half-written is
    left). ``rollback(n)`` drops the last ``n`` bytes written, for a segment that is redone; live
    sinks cannot. A sink is an async context manager: ``close()`` on success, ``abort()`` on error.
    """

    live: ClassVar[bool] = False
    """True when written audio reaches a listener at once and cannot be taken back."""

    @abc.abstractmethod
    async def write(self, pcm: bytes) -> None:
        """Take the next chunk of PCM16 LE mono audio (whole samples)."""

    async def rollback(self, nbytes: int) -> None:
        """Drop the last ``nbytes`` written.

        Raises:
            InvalidStateError: The sink cannot take that audio back (a live sink, say).
        """
        if nbytes:
            raise InvalidStateError(f"{type(self).__name__} cannot take back audio it has already delivered.")

    @abc.abstractmethod
    async def close(self) -> None:
        """The input is complete: finalize (fix headers, rename the file into place)."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Discard everything; idempotent, and safe to call while being cancelled."""

    async def __aenter__(self) -> AudioSink:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self.close()
        else:
            await self.abort()


class ChunksSink(AudioSink):
    """Base64 chunks for the response (``audio_base64_pcm_chunks``), encoded as they arrive.

    Holds 4/3 of the PCM, and never the PCM itself.
    """

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self._sizes: list[int] = []

    async def write(self, pcm: bytes) -> None:
        self.chunks.append(encode_kept_chunk(pcm))
        self._sizes.append(len(pcm))

    async def rollback(self, nbytes: int) -> None:
        if nbytes > sum(self._sizes):
            raise InvalidStateError(f"Cannot roll back {nbytes} bytes: only {sum(self._sizes)} were written.")
        while nbytes and nbytes >= self._sizes[-1]:
            nbytes -= self._sizes.pop()
            self.chunks.pop()
        if nbytes:
            kept = decode_chunk(self.chunks[-1])[:-nbytes]
            self.chunks[-1], self._sizes[-1] = encode_kept_chunk(kept), len(kept)

    async def close(self) -> None:
        pass

    async def abort(self) -> None:
        self.chunks.clear()
        self._sizes.clear()


class CallbackSink(AudioSink):
    """Awaits ``callback`` with each chunk as an :class:`~.models.AudioChunk`; live (progress, playback)."""

    live = True

    def __init__(self, callback: Callable[[AudioChunk], Awaitable[None]], sample_rate: int) -> None:
        self._callback = callback
        self._sample_rate = sample_rate

    async def write(self, pcm: bytes) -> None:
        await self._callback(AudioChunk(pcm, self._sample_rate))

    async def close(self) -> None:
        pass

    async def abort(self) -> None:
        pass


class TeeSink(AudioSink):
    """Feeds every chunk to several sinks, in the order given; live when any of them is."""

    def __init__(self, sinks: Iterable[AudioSink]) -> None:
        self.sinks = tuple(sinks)
        self.live = any(sink.live for sink in self.sinks)  # type: ignore[misc]  # per instance: its members decide

    async def write(self, pcm: bytes) -> None:
        for sink in self.sinks:
            await sink.write(pcm)

    async def rollback(self, nbytes: int) -> None:
        if nbytes and self.live:
            raise InvalidStateError("Cannot take back audio that a live sink has already delivered.")
        for sink in self.sinks:
            await sink.rollback(nbytes)

    async def close(self) -> None:
        try:
            for sink in self.sinks:
                await sink.close()
        except BaseException:
            await self.abort()  # the ones already closed are final; the others leave nothing
            raise

    async def abort(self) -> None:
        for sink in self.sinks:
            await sink.abort()


# ---------------------------------------------------------------------------------------------
# Files


def _unwritable(path: Path, exc: OSError) -> OutputError:
    return OutputError(
        f"The audio was synthesized but could not be written to {path}: {exc.strerror or type(exc).__name__}; "
        "free some space or choose another output path."
    )


class _PartFile:
    """The file system side of a file sink, used from one worker thread at a time (blocking calls).

    Folders are created and the hidden part file is opened below an anchor directory: ``root``
    when confined, else the nearest existing folder above the target. Each folder below the
    anchor is opened with ``O_NOFOLLOW``; the rename happens inside the last folder's descriptor.
    """

    def __init__(self, target: Path, root: Path | None) -> None:
        self.target = target
        self.root = root
        self.part_name = f".tts-{secrets.token_hex(6)}.part"
        self.fd: int | None = None
        self._dir_fds: list[int] = []  # anchor first, then each folder below it
        self._created: list[tuple[int, str]] = []  # (parent descriptor, name) of each folder made here
        self._created_paths: list[Path] = []  # the same, for platforms without dir_fd

    def _walk(self) -> tuple[Path, list[str]]:
        """The anchor (an existing folder, trusted) and the folder names below it, to the target's folder."""
        parent = self.target.parent
        if self.root is not None and not parent.is_relative_to(self.root):
            raise OutputError(f"{self.target} is not inside the output directory {self.root}.")
        anchor = self.root if self.root is not None else parent
        while not anchor.is_dir() and anchor.parent != anchor:
            anchor = anchor.parent
        return anchor, list(parent.relative_to(anchor).parts)

    def open(self) -> int:
        anchor, names = self._walk()
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        if not _HAS_DIR_FD:
            folder = anchor
            for name in names:
                folder = folder / name
                try:
                    folder.mkdir()
                    self._created_paths.append(folder)
                except FileExistsError:
                    pass
            self.fd = os.open(self.target.parent / self.part_name, flags, 0o666)
            return self.fd
        self._dir_fds.append(os.open(anchor, os.O_RDONLY | os.O_DIRECTORY))
        for depth, name in enumerate(names, start=1):
            parent = self._dir_fds[-1]
            try:
                os.mkdir(name, 0o777, dir_fd=parent)
                self._created.append((parent, name))
            except FileExistsError:
                pass
            try:
                self._dir_fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent))
            except OSError as exc:
                folder = anchor.joinpath(*names[:depth])
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and folder.is_symlink():
                    raise OutputError(
                        f"The folder {folder} became a symbolic link during the synthesis; the audio was not "
                        "written, so that it cannot land outside the output directory."
                    ) from None
                raise
        self.fd = os.open(self.part_name, flags | os.O_NOFOLLOW, 0o666, dir_fd=self._dir_fds[-1])
        return self.fd

    def commit(self) -> None:
        """Rename the part file over the target (atomic), then release the descriptors."""
        if not _HAS_DIR_FD:
            if self.root is not None:
                real = Path(os.path.realpath(self.target.parent))
                if not real.is_relative_to(Path(os.path.realpath(self.root))):
                    raise OutputError(
                        f"The folder {self.target.parent} now leads outside the output directory; the audio "
                        "was not written."
                    )
            os.replace(self.target.parent / self.part_name, self.target)
        else:
            folder = self._dir_fds[-1]
            os.replace(self.part_name, self.target.name, src_dir_fd=folder, dst_dir_fd=folder)
        self._created.clear()
        self._created_paths.clear()
        self.release()

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        while self._dir_fds:
            os.close(self._dir_fds.pop())

    def discard(self) -> None:
        """Remove the part file and the folders made for it; idempotent."""
        if self.fd is not None:
            with contextlib.suppress(OSError):  # cleanup never raises
                os.close(self.fd)
            self.fd = None
            with contextlib.suppress(OSError):  # cleanup never raises
                if _HAS_DIR_FD and self._dir_fds:
                    os.unlink(self.part_name, dir_fd=self._dir_fds[-1])
                else:
                    os.unlink(self.target.parent / self.part_name)
        for parent, name in reversed(self._created):
            with contextlib.suppress(OSError):  # cleanup never raises
                os.rmdir(name, dir_fd=parent)  # only if still empty
        for path in reversed(self._created_paths):
            with contextlib.suppress(OSError):  # cleanup never raises
                path.rmdir()
        self._created.clear()
        self._created_paths.clear()
        while self._dir_fds:
            with contextlib.suppress(OSError):  # cleanup never raises
                os.close(self._dir_fds.pop())


class FileSink(AudioSink):
    """Base of the file sinks: a ``.part`` file written in batches in worker threads, renamed at close.

    Subclasses write the bytes (:meth:`_begin`, :meth:`_append`, :meth:`_finish`,
    :meth:`_truncate`); they run in a worker thread, one at a time, under the sink's lock.

    Cancellation: :meth:`abort` never awaits. If a worker thread is still busy with the file (a
    plain asyncio cancel does not wait for it), it removes the file itself when it is done.
    """

    def __init__(self, path: Path, sample_rate: int, *, root: Path | None = None) -> None:
        self.path = path.absolute()
        self.sample_rate = sample_rate
        self._part = _PartFile(self.path, root.absolute() if root is not None else None)
        # The batch: the first _fill bytes of a buffer of FLUSH_BYTES, allocated at the first write
        # and reused, never resized (a buffer regrown and copied per batch fragments the C heap
        # under the response's kept chunks in output="both"; benchmarks/memory.py).
        self._buffer = bytearray()
        self._fill = 0
        self._written = 0  # bytes taken, buffered ones included
        self._lock = threading.Lock()
        self._aborted = False
        self._closed = False

    # -- the loop side

    async def write(self, pcm: bytes) -> None:
        self._check_open()
        if self._fill + len(pcm) > FLUSH_BYTES:
            await self._flush(self._append_sync)
        self._written += len(pcm)
        if len(pcm) >= FLUSH_BYTES:  # a batch by itself
            await self._run(self._append_sync, pcm)
            return
        if not self._buffer:
            self._buffer = bytearray(FLUSH_BYTES)
        self._buffer[self._fill : self._fill + len(pcm)] = pcm
        self._fill += len(pcm)

    async def _flush(self, function: Callable[[memoryview], None]) -> None:
        """Hand the batch to ``function`` in a worker thread and empty it (even if that fails)."""
        # The thread reads the buffer in place: every caller awaits this, so nothing writes to it
        # meanwhile, and a cancelled call aborts the sink, which then takes no more writes. The view
        # is not released here: after a plain asyncio cancel the thread may still be reading it.
        batch = memoryview(self._buffer)[: self._fill]
        self._fill = 0
        await self._run(function, batch)

    async def rollback(self, nbytes: int) -> None:
        self._check_open()
        if not nbytes:
            return
        if nbytes > self._written:
            raise InvalidStateError(f"Cannot roll back {nbytes} bytes: only {self._written} were written.")
        if nbytes <= self._fill:
            self._fill -= nbytes
        else:
            self._fill = 0
            await self._run(self._truncate_sync, self._written - nbytes)
        self._written -= nbytes

    async def close(self) -> None:
        self._check_open()
        await self._flush(self._finish_sync)
        await anyio.lowlevel.checkpoint_if_cancelled()
        async with self._aborted_on_failure():
            self._part.commit()  # on the loop: the file appears only if the call survived the write
        self._closed = True

    async def abort(self) -> None:
        if self._closed:
            return
        self._aborted = True
        self._fill = 0
        self._discard_unless_busy()  # when busy, the worker thread discards the file once done (_locked)

    def _discard_unless_busy(self) -> None:
        """Remove the part file, unless a worker thread holds the lock (it then discards it itself)."""
        if self._lock.acquire(blocking=False):
            try:
                self._part.discard()
            finally:
                self._lock.release()

    @contextlib.asynccontextmanager
    async def _aborted_on_failure(self) -> AsyncIterator[None]:
        """Any failure inside aborts the sink (no part file stays); an OSError becomes an OutputError."""
        try:
            yield
        except OSError as exc:
            await self.abort()
            raise _unwritable(self.path, exc) from exc
        except BaseException:
            await self.abort()
            raise

    def _check_open(self) -> None:
        if self._closed or self._aborted:
            raise InvalidStateError(f"The file sink for {self.path} is {'closed' if self._closed else 'aborted'}.")

    async def _run(self, function: Callable[..., None], *args: Any) -> None:
        async with self._aborted_on_failure():
            await anyio.to_thread.run_sync(self._locked, function, *args)

    def _locked(self, function: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if not self._aborted:
                function(*args)
        if self._aborted:  # aborted while this thread held the lock
            self._discard_unless_busy()

    # -- the worker-thread side

    def _fd(self) -> int:
        if self._part.fd is None:
            fd = self._part.open()
            self._begin(fd)
            return fd
        return self._part.fd

    def _append_sync(self, data: bytes | memoryview) -> None:
        self._append(self._fd(), data)

    def _truncate_sync(self, keep: int) -> None:
        self._truncate(self._fd(), keep)

    def _finish_sync(self, data: bytes | memoryview) -> None:
        fd = self._fd()
        if data:
            self._append(fd, data)
        self._finish(fd)
        os.fsync(fd)

    def _begin(self, fd: int) -> None:
        """The part file was just created (empty)."""

    @abc.abstractmethod
    def _append(self, fd: int, data: bytes | memoryview) -> None:
        """Write ``data`` (PCM) at the end."""

    @abc.abstractmethod
    def _truncate(self, fd: int, keep: int) -> None:
        """Keep only the first ``keep`` bytes of PCM written."""

    def _finish(self, fd: int) -> None:
        """All PCM is written: fix headers, flush encoders."""


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class PcmFileSink(FileSink):
    """Raw PCM s16le mono, no header (``format='pcm'``)."""

    def _append(self, fd: int, data: bytes | memoryview) -> None:
        _write_all(fd, data)

    def _truncate(self, fd: int, keep: int) -> None:
        os.ftruncate(fd, keep)
        os.lseek(fd, 0, os.SEEK_END)


class WavFileSink(PcmFileSink):
    """A WAV file (PCM16 mono): a placeholder RIFF header first, the sizes fixed at close."""

    HEADER_BYTES = 44
    MAX_DATA_BYTES = 0xFFFFFFFF - 36  # RIFF sizes are 32-bit: about 24 hours at 24 kHz

    def _header(self, data_bytes: int) -> bytes:
        rate = self.sample_rate
        return struct.pack(
            "<4sI4s4sIHHIIHH4sI",
            b"RIFF",
            36 + data_bytes,
            b"WAVE",
            b"fmt ",
            16,  # PCM format chunk size
            1,  # PCM
            1,  # mono
            rate,
            rate * 2,  # byte rate
            2,  # block align
            16,  # bits per sample
            b"data",
            data_bytes,
        )

    def _begin(self, fd: int) -> None:
        _write_all(fd, self._header(0))

    def _truncate(self, fd: int, keep: int) -> None:
        super()._truncate(fd, self.HEADER_BYTES + keep)

    def _finish(self, fd: int) -> None:
        data_bytes = os.fstat(fd).st_size - self.HEADER_BYTES
        if data_bytes > self.MAX_DATA_BYTES:
            raise OutputError(f"The audio is too long for a WAV file ({data_bytes} bytes); use format 'flac'.")
        os.lseek(fd, 0, os.SEEK_SET)
        _write_all(fd, self._header(data_bytes))
        os.lseek(fd, 0, os.SEEK_END)


class EncodedFileSink(FileSink):
    """MP3, Ogg Opus or FLAC, encoded by ``soundfile`` (libsndfile) batch by batch as audio arrives.

    :meth:`rollback` takes back the buffered audio, or all of it (the encoder restarts on an empty
    file); anything in between cannot be cut out of an encoded stream and raises
    :class:`~.errors.InvalidStateError`, so the service does not retry then.
    """

    def __init__(self, path: Path, sample_rate: int, audio_format: AudioFormat, *, root: Path | None = None) -> None:
        if audio_format.soundfile is None:
            raise ValueError(f"{audio_format.name} is not an encoded format")
        super().__init__(path, sample_rate, root=root)
        self.format = audio_format
        self._encoder: Any = None

    async def rollback(self, nbytes: int) -> None:
        if self._fill < nbytes < self._written:
            raise InvalidStateError(
                f"Cannot take back part of the {self.format.name} audio already encoded; only all of it."
            )
        await super().rollback(nbytes)

    def _begin(self, fd: int) -> None:
        import soundfile

        container, subtype = self.format.soundfile  # type: ignore[misc]
        self._encoder = soundfile.SoundFile(
            fd, "w", samplerate=self.sample_rate, channels=1, format=container, subtype=subtype, closefd=False
        )

    def _append(self, fd: int, data: bytes | memoryview) -> None:
        self._encoder.buffer_write(data, dtype="int16")

    def _truncate(self, fd: int, keep: int) -> None:  # keep is 0 here (see rollback)
        self._encoder.close()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        self._begin(fd)

    def _finish(self, fd: int) -> None:
        self._encoder.close()


def open_file_sink(audio_format: AudioFormat, path: Path, sample_rate: int, *, root: Path | None = None) -> FileSink:
    """The file sink that writes ``audio_format`` to ``path`` (nothing is created before the first write).

    Args:
        audio_format: From :func:`~.formats.resolve_format`; check it first with
            :func:`~.formats.check_format`.
        path: The final file; a hidden ``.part`` file next to it is renamed over it at close.
        sample_rate: Of the PCM that will be written.
        root: Keep the file inside this directory even if a folder on the way is swapped for a
            symlink meanwhile (``path`` must be below it).
    """
    if audio_format.soundfile is not None:
        return EncodedFileSink(path, sample_rate, audio_format, root=root)
    if audio_format.name == "pcm":
        return PcmFileSink(path, sample_rate, root=root)
    return WavFileSink(path, sample_rate, root=root)

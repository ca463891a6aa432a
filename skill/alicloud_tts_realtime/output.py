"""Where audio files go: the output directory and its fallback, collision-safe names, confinement, atomic writes.

The fallback is the per-user data directory (:func:`user_data_dir`), for servers started where
the configured output directory cannot be written (see :func:`writable_audio_dir`).
"""

from __future__ import annotations

import errno
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread

from .errors import ConfigurationError, InvalidRequestError
from .quoting import quote

__all__ = [
    "atomic_write",
    "confined_path",
    "new_audio_name",
    "part_path",
    "prepare_target",
    "unwritable_reason",
    "user_data_dir",
    "writable_audio_dir",
    "write_part",
]

DIST_NAME = "alicloud-ai-audio-tts-realtime"
# The longest file or folder name that file systems take (ext4, APFS, NTFS: 255 bytes or units).
MAX_NAME_BYTES = 255
# PATH_MAX on Linux (4,096 bytes, with the final NUL); longer paths fail with ENAMETOOLONG.
MAX_PATH_BYTES = 4095
# Folders a filename may create or name; deep enough for any real layout.
MAX_FOLDERS = 32


def new_audio_name(prefix: str = "tts", suffix: str = ".wav") -> str:
    """A unique file name that never embeds user text: ``tts-20261123-191200-3f9a1c2b.wav``."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}{suffix}"


def confined_path(directory: Path, filename: str, extension: str = ".wav") -> Path:
    """Resolve ``filename`` inside ``directory``, refusing anything that would land elsewhere.

    Callers such as MCP clients pass names chosen by a model, so absolute paths, ``..`` and
    symlinks that point out of the directory are all refused: ``resolve()`` follows links and
    ``relative_to()`` proves the result is still below the directory. ``extension`` (the format's,
    e.g. ``.mp3``) is added when the name does not end in it. Writing the file later walks the
    folders again without following symlinks (:mod:`.sinks`), so a link planted meanwhile is
    refused too.

    Raises:
        InvalidRequestError: The name is absolute, empty, has control characters, over-long parts,
            too many folders or too many bytes, runs into a symlink loop, or resolves outside
            ``directory``.
    """
    if not filename or not filename.strip():
        raise InvalidRequestError("filename must not be empty.", field="filename")
    shown = quote(filename)
    if any(ord(char) < 32 or ord(char) == 127 for char in filename):
        raise InvalidRequestError(f"filename {shown} must not contain control characters.", field="filename")
    candidate = Path(filename)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise InvalidRequestError(
            f"filename {shown} must be a plain name inside the output directory (no absolute path, no '..').",
            field="filename",
        )
    if candidate.name in ("", "."):
        raise InvalidRequestError(f"filename {shown} must end in a file name, e.g. 'greeting'.", field="filename")
    if len(candidate.parts) - 1 > MAX_FOLDERS:
        raise InvalidRequestError(
            f"filename has {len(candidate.parts) - 1} folder levels; at most {MAX_FOLDERS} are allowed.",
            field="filename",
        )
    if candidate.suffix.lower() != extension:
        candidate = candidate.with_name(candidate.name + extension)
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in candidate.parts):
        raise InvalidRequestError(
            f"filename has a part longer than {MAX_NAME_BYTES} bytes (with {extension!r}); use a shorter name.",
            field="filename",
        )
    base = directory.resolve()
    length = len(str(base / candidate).encode("utf-8", "surrogatepass"))
    if length > MAX_PATH_BYTES:
        raise InvalidRequestError(
            f"filename makes a path of {length} bytes in the output directory, over the {MAX_PATH_BYTES} "
            "that file systems take; use a shorter name.",
            field="filename",
        )
    loop = InvalidRequestError(
        f"filename {shown} runs into a symbolic link loop in the output directory; choose another name.",
        field="filename",
    )
    try:
        target = (base / candidate).resolve()
        _stat_links(base, candidate)  # Python 3.13's resolve() returns a loop's path instead of raising
    except (RuntimeError, OSError) as exc:  # Python < 3.13 raises RuntimeError for a loop
        if isinstance(exc, OSError) and exc.errno != errno.ELOOP:
            raise InvalidRequestError(
                f"filename {shown} cannot be used in the output directory: {exc.strerror or type(exc).__name__}.",
                field="filename",
            ) from None
        raise loop from None
    if not target.is_relative_to(base):
        raise InvalidRequestError(f"filename {shown} resolves outside the output directory.", field="filename")
    return target


def _stat_links(base: Path, candidate: Path) -> None:
    """Follow every symlink on the way from ``base`` down ``candidate``; a loop raises ``ELOOP``.

    A dangling link is left to the caller (it resolves inside or outside the directory like any).
    """
    path = base
    for part in candidate.parts:
        path = path / part
        if path.is_symlink():
            try:
                os.stat(path)
            except FileNotFoundError:
                return
        elif not path.exists():
            return  # nothing further down exists yet


def part_path(path: Path) -> Path:
    """A fresh temporary name next to ``path`` for :func:`write_part` (short: any valid name has room)."""
    return path.absolute().with_name(f".tts-{secrets.token_hex(6)}.part")


def write_part(part: Path, data: bytes, abandoned: threading.Event | None = None) -> None:
    """Write ``data`` to the new file ``part`` and flush it to disk; the first half of an atomic write.

    The parent folders are created if missing. The file gets the usual permissions (``0o666`` less
    the umask), like any file the user saves. On failure, or when ``abandoned`` is set by the time
    the data is on disk (the caller was cancelled meanwhile), ``part`` is removed.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if abandoned is not None and abandoned.is_set():
        part.unlink(missing_ok=True)


async def atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the absolute path.

    The bytes go to a temporary file in the same directory (:func:`write_part`, in one of anyio's
    bounded worker threads: a slow disk never stalls the event loop), then it is renamed over
    ``path`` here, on the loop, and only if the caller was not cancelled meanwhile. On any failure
    or cancellation (by anyio or plain asyncio) the temporary file is removed: no half-written
    file is ever seen, and a cancelled call leaves nothing behind.
    """
    path = path.absolute()
    part, abandoned = part_path(path), threading.Event()
    try:
        await anyio.to_thread.run_sync(write_part, part, data, abandoned)
        await anyio.lowlevel.checkpoint_if_cancelled()
        os.replace(part, path)
    except BaseException:
        abandoned.set()  # the thread removes its file if it is still writing (plain asyncio cancel)
        part.unlink(missing_ok=True)
        raise
    return path


def prepare_target(path: Path) -> Path:
    """Check, before any paid call, that an audio file can be written at ``path``; return it absolute.

    Nothing is created: the nearest existing folder on the way is tried with a real (anonymous)
    file, so a failed synthesis leaves no empty folders behind; :func:`atomic_write` creates them.

    Raises:
        InvalidRequestError: ``path`` is an existing directory.
        ConfigurationError: The parent directory cannot be created or written; says why.
    """
    path = path.absolute()
    try:
        return _prepare_target(path)
    except OSError as exc:  # a path too long, a loop in its folders …
        raise InvalidRequestError(
            f"Cannot use {quote(str(path))} as the output path: {exc.strerror or type(exc).__name__}.",
            field="output",
        ) from None


def _prepare_target(path: Path) -> Path:
    if path.is_dir():
        raise InvalidRequestError(
            f"{path} is a directory; give a file path such as {path / 'speech.wav'}.", field="output"
        )
    reason = unwritable_reason(path.parent)
    if reason is not None:
        raise ConfigurationError(
            f"Cannot write audio to {path.parent}: {reason}. "
            "Set OUTPUT_DIR to a writable directory or choose another output path."
        )
    return path


def user_data_dir(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """The per-user data directory of this package (platformdirs' rules, without the dependency).

    ``$XDG_DATA_HOME`` or ``~/.local/share`` on Linux, ``~/Library/Application Support`` on
    macOS, ``%LOCALAPPDATA%`` on Windows; then ``alicloud-ai-audio-tts-realtime``.
    """
    env = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    if sys.platform == "win32":
        base = Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        xdg = env.get("XDG_DATA_HOME", "").strip()
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"
    return base / DIST_NAME


def unwritable_reason(directory: Path) -> str | None:
    """Why files cannot be created in ``directory``, or ``None`` when they can.

    Nothing is created: a missing ``directory`` is judged by its nearest existing ancestor, in
    which the missing folders would be made (the same permission).
    """
    # Try for real: os.access() says yes to root on read-only mounts and knows nothing of quotas.
    directory = directory.absolute()
    existing = directory
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return "it is a file, not a directory" if existing == directory else f"{existing} is a file, not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def writable_audio_dir(preferred: Path, data_dir: Path | None = None) -> tuple[Path, str | None]:
    """The directory for audio files, and a sentence when it is the fallback.

    MCP clients often start servers with ``/`` as the working directory, where the default
    relative ``output`` directory cannot be created; ``audio`` under ``data_dir`` (default
    :func:`user_data_dir`) is the fallback. Each is tried with a real file in it or in its nearest
    existing parent; nothing is created (:func:`atomic_write` creates the folders it writes to).

    Args:
        preferred: The configured output directory; relative to the working directory if relative.
        data_dir: The fallback's parent directory.

    Returns:
        The resolved directory, and ``None`` or a sentence saying that the fallback was used and why.

    Raises:
        ConfigurationError: Neither directory is writable.
    """
    preferred = preferred.absolute()
    if unwritable_reason(preferred) is None:
        return preferred.resolve(), None
    fallback = (data_dir or user_data_dir()) / "audio"
    if unwritable_reason(fallback) is None:
        note = f"The output directory {preferred} is not writable, so the audio was saved under {fallback.resolve()}."
        return fallback.resolve(), note
    raise ConfigurationError(
        f"Neither {preferred} nor {fallback} is writable; set OUTPUT_DIR to a writable directory for the server."
    )

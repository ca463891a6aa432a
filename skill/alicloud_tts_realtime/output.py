"""Where audio files go: the output directory, collision-safe names, confinement, atomic writes."""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from pathlib import Path

from .errors import InvalidRequestError

__all__ = ["atomic_write", "confined_path", "new_audio_name"]


def new_audio_name(prefix: str = "tts", suffix: str = ".wav") -> str:
    """A unique file name that never embeds user text: ``tts-20261123-191200-3f9a1c2b.wav``."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}{suffix}"


def confined_path(directory: Path, filename: str) -> Path:
    """Resolve ``filename`` inside ``directory``, refusing anything that would land elsewhere.

    Callers such as MCP clients pass names chosen by a model, so absolute paths, ``..`` and
    symlinks that point out of the directory are all refused: ``resolve()`` follows links and
    ``relative_to()`` proves the result is still below the directory.

    Raises:
        InvalidRequestError: The name is absolute, empty, or resolves outside ``directory``.
    """
    if not filename or not filename.strip():
        raise InvalidRequestError("filename must not be empty.", field="filename")
    candidate = Path(filename)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise InvalidRequestError(
            f"filename {filename!r} must be a plain name inside the output directory (no absolute path, no '..').",
            field="filename",
        )
    if candidate.suffix.lower() != ".wav":
        candidate = candidate.with_name(candidate.name + ".wav")
    base = directory.resolve()
    target = (base / candidate).resolve()
    try:
        target.relative_to(base)
    except ValueError:
        raise InvalidRequestError(
            f"filename {filename!r} resolves outside the output directory.", field="filename"
        ) from None
    return target


def atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the absolute path.

    The bytes go to a temporary file in the same directory, are flushed to disk, then renamed over
    ``path``; on any failure the temporary file is removed, so no half-written file is ever seen.
    """
    path = path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

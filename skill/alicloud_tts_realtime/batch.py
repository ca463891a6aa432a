"""Batch synthesis: many texts, each to a file, resumable, paced to the account's limits.

The input is JSON Lines, one object per item (``id``, ``text``, and optionally ``voice``,
``instruction``, ``model``, ``sample_rate``, ``language_type``). :func:`check_input` validates a
whole file, streaming, before anything is sent (bounded memory: only the ids are kept);
:func:`read_input` then yields its items. :func:`synthesize_batch` synthesizes items into
``DIR/<id>.wav`` through :func:`~.service.synthesize` (atomic writes, retries only before the first
audio) and records each finished item in ``DIR/manifest.jsonl`` (:class:`Ledger`), which a rerun
reads to skip what is done. :class:`Pacer` keeps every session start under ``--rpm`` and pauses
the whole batch when the service throttles.

Strategy for crashes: an item is done only once its file has been renamed into place *and* its
manifest line is on disk (flushed and fsynced). A kill between the two costs one repeated item,
never a missing one; a torn last line (a kill mid-write) is dropped when the manifest is reopened.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import anyio
import anyio.to_thread
from pydantic import ValidationError

from .engines.base import Capabilities, Engine, StreamItem
from .errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidInputError,
    InvalidRequestError,
    RateLimitError,
    TTSError,
)
from .formats import FORMAT_NAMES, check_format, resolve_format
from .formats import FORMATS as FORMAT_REGISTRY
from .models import SpeechRequest
from .output import unwritable_reason
from .service import RetryOptions, synthesize

__all__ = [
    "FORMATS",
    "MANIFEST_NAME",
    "BatchItem",
    "BatchTally",
    "ItemResult",
    "Ledger",
    "Pacer",
    "check_input",
    "read_input",
    "synthesize_batch",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
DEFAULT_VOICE = "Cherry"  # as for ``speak``
FORMATS: tuple[str, ...] = FORMAT_NAMES  # the package's one registry (formats.py)
ITEM_FIELDS: tuple[str, ...] = ("id", "text", "voice", "instruction", "model", "sample_rate", "language_type")
ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,100}")
MAX_PROBLEMS = 20  # listed; the rest are counted
MAX_LINE_BYTES = 1 << 20  # a line longer than this cannot be a valid item (text ≤ 5000 characters)
# Batch work is unattended: more patience than one call, since limits recover within about a minute.
BATCH_RETRY = RetryOptions(max_retries=6, interval=0.5)
_PART_GLOB = ".tts-*.part"  # output.part_path's temporary files

Status = Literal["ok", "failed", "skipped"]


def _excerpt(value: object, limit: int = 80) -> str:
    """A short, escaped excerpt for messages (``repr`` escapes controls and quotes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class BatchItem:
    """One item of a batch: a safe id (the file stem) and a resolved request.

    Build it with :meth:`build`, which checks everything that can be checked before a paid call.

    Attributes:
        id: ``[A-Za-z0-9._-]``, 1–100 characters; the output file is ``<id>.wav``.
        request: The resolved request (model chosen, voice checked).
        line: The input line it came from, when read from a file.
    """

    id: str
    request: SpeechRequest
    line: int | None = None

    @classmethod
    def build(cls, fields: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None) -> BatchItem:
        """Validate one item's fields (over ``defaults``, e.g. the command-line flags).

        Raises:
            InvalidRequestError: The first problem; :func:`item_problems` lists them all.
        """
        item, problems = _build(fields, defaults or {}, None)
        if item is None:
            raise InvalidRequestError(problems[0], field="input")
        return item


def _check_id(value: object) -> str | None:
    """The problem with an item id, or None."""
    if value is None:
        return "missing field 'id'"
    if not isinstance(value, str):
        return f"'id' must be a string, not {type(value).__name__}"
    if not ID_PATTERN.fullmatch(value):
        return (
            f"unsafe id {_excerpt(value)}: use 1–100 characters from A–Z, a–z, 0–9, '.', '_' and '-' "
            "(it becomes the file name)"
        )
    return None


def _build(
    fields: Mapping[str, Any], defaults: Mapping[str, Any], line: int | None
) -> tuple[BatchItem | None, list[str]]:
    """The item, or every problem found in ``fields`` (sentences without the line number)."""
    problems: list[str] = []
    unknown = [name for name in fields if name not in ITEM_FIELDS]
    if unknown:
        problems.append(
            f"unknown field {_excerpt(unknown[0], 40)}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f"; the fields are: {', '.join(ITEM_FIELDS)}"
        )  # fmt: skip
    id_problem = _check_id(fields.get("id"))
    if id_problem:
        problems.append(id_problem)
    if "text" not in fields:
        problems.append("missing field 'text'")
    values: dict[str, Any] = {"voice": DEFAULT_VOICE}
    values.update({k: v for k, v in defaults.items() if v is not None})
    values.update({k: v for k, v in fields.items() if k in ITEM_FIELDS and k != "id" and v is not None})
    request: SpeechRequest | None = None
    try:
        request = SpeechRequest.model_validate(values)
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "item"
            if name == "text" and "text" not in fields:
                continue  # already said
            problems.append(f"invalid {name}: {error['msg'].removeprefix('Value error, ')}")
    if request is not None and not problems:
        try:
            request = request.resolved()
        except InvalidRequestError as exc:
            problems.append(str(exc).rstrip("."))
    if problems:
        return None, problems
    assert request is not None
    return BatchItem(id=fields["id"], request=request, line=line), []


def _lines(handle: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes without the line end) for each line; None for a line over the size limit."""
    number = 0
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line, a bounded piece at a time
                raw = handle.readline(MAX_LINE_BYTES)
            yield number, None
            continue
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        yield number, raw.rstrip(b"\r\n")


def _parse(number: int, raw: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object on a line, or the problem with it; (None, None) for a blank line."""
    if raw is None:
        return (
            None,
            f"line {number}: longer than {MAX_LINE_BYTES // 1024} KiB; an item's text has at most 5000 characters",
        )
    if not raw.strip():
        return None, None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, f"line {number}: not UTF-8 text"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(data, dict):
        return None, f"line {number}: must be a JSON object with 'id' and 'text', not a JSON {type(data).__name__}"
    return data, None


def _scan(path: Path, defaults: Mapping[str, Any]) -> Iterator[tuple[BatchItem | None, list[str]]]:
    """Each non-blank line's item or problems (with line numbers), duplicates included, streaming."""
    # Only the ids are kept (lower-cased: 'A' and 'a' are one file on case-insensitive file systems).
    first_line: dict[str, int] = {}
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ConfigurationError(f"Cannot read the batch input {path}: {exc.strerror or exc}.") from None
    with handle:
        for number, raw in _lines(handle):
            data, problem = _parse(number, raw)
            if problem is not None:
                yield None, [problem]
                continue
            if data is None:
                continue  # a blank line
            item, problems = _build(data, defaults, number)
            item_id = data.get("id")
            if isinstance(item_id, str) and _check_id(item_id) is None:
                key = item_id.lower()
                if key in first_line:
                    same = "" if item_id in first_line else " (file names may not differ only in case)"
                    problems.insert(0, f"duplicate id {_excerpt(item_id)}, first on line {first_line[key]}{same}")
                    item = None
                else:
                    first_line[key] = number
            yield item, [f"line {number}: {p}" for p in problems]


def check_input(path: Path, defaults: Mapping[str, Any] | None = None) -> int:
    """Validate a whole JSON Lines input, streaming, and return how many items it holds.

    Blank lines are skipped. Memory stays bounded whatever the file's size: one line at a time,
    and the ids seen.

    Args:
        path: The input file.
        defaults: Field values for items that do not set them (``voice``, ``model`` …).

    Raises:
        InvalidInputError: Every problem is counted; the first :data:`MAX_PROBLEMS` are listed,
            each with its line number.
        ConfigurationError: The file cannot be read.
    """
    problems: list[str] = []
    count = items = 0
    for item, found in _scan(path, defaults or {}):
        count += len(found)
        problems.extend(found[: max(0, MAX_PROBLEMS - len(problems))])
        items += item is not None
    if count:
        noun = "problem" if count == 1 else "problems"
        raise InvalidInputError(f"{path} has {count} {noun}; nothing was sent.", problems=tuple(problems), count=count)
    return items


def read_input(path: Path, defaults: Mapping[str, Any] | None = None) -> Iterator[BatchItem]:
    """The items of an input file, streaming; call :func:`check_input` first.

    Raises:
        InvalidRequestError: A line is invalid (the file changed since it was checked).
    """
    for item, problems in _scan(path, defaults or {}):
        if item is None:
            raise InvalidRequestError(f"{path}: {problems[0]}; check it again.", field="input")
        yield item


# --- results and the manifest ------------------------------------------------------------------


@dataclass(frozen=True)
class ItemResult:
    """What became of one item; one manifest line (``skipped`` ones are not recorded).

    Attributes:
        id: The item id.
        status: ``ok``, ``failed``, or ``skipped`` (already done by an earlier run).
        file: The output file's name inside the output directory, when written.
        duration_ms: Audio duration.
        characters: Billed characters, when the service reports them.
        first_audio_ms: Milliseconds from the item's start to its first audio.
        segments: Responses the text was spoken in.
        error: One sentence, when it failed.
        attempts: Sessions started for it (retries before audio included).
    """

    id: str
    status: Status
    file: str | None = None
    duration_ms: int | None = None
    characters: int | None = None
    first_audio_ms: int | None = None
    segments: int | None = None
    error: str | None = None
    attempts: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, separators=(",", ":"))


class Ledger:
    """``DIR/manifest.jsonl``: one JSON line per finished item, appended and synced as each ends.

    Opening it locks it (POSIX ``flock``), so two runs cannot write into one directory at once;
    drops a torn last line; reads which ids are already ``ok`` (the last line of an id wins); and
    removes temporary files left by a killed run. Blocking: call it from a worker thread.

    Raises:
        ConfigurationError: The directory cannot be written, or another run holds the lock.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / MANIFEST_NAME
        reason = unwritable_reason(directory)
        if reason is not None:
            raise ConfigurationError(f"Cannot write to the output directory {directory}: {reason}.")
        directory.mkdir(parents=True, exist_ok=True)
        self._guard = threading.Lock()  # appends come from worker threads; close() waits for them
        self._file = self.path.open("a+b")
        try:
            self._lock()
            self._ok: set[str] = self._read()
            for part in directory.glob(_PART_GLOB):  # only a killed run of ours leaves these here
                part.unlink(missing_ok=True)
        except BaseException:
            self._file.close()
            raise

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory lock; one run per directory is then up to the user
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigurationError(
                f"Another batch is writing to {self.directory}; wait for it to end or choose another --out-dir."
            ) from None

    def _read(self) -> set[str]:
        """The ids whose last line is ``ok``; a torn last line (a kill mid-write) is cut off."""
        self._file.seek(0)
        last: dict[str, bool] = {}
        good_end = 0
        for raw in iter(self._file.readline, b""):
            if not raw.endswith(b"\n"):
                break  # torn: the item was not recorded
            good_end += len(raw)
            try:
                entry = json.loads(raw)
                last[str(entry["id"])] = entry["status"] == "ok"
            except (ValueError, KeyError, TypeError):
                logger.warning("%s: skipping a line that is not a manifest entry", self.path)
        if good_end < self._file.seek(0, os.SEEK_END):
            self._file.truncate(good_end)
        return {item_id for item_id, ok in last.items() if ok}

    def is_done(self, item_id: str, target: Path) -> bool:
        """Whether ``item_id`` is recorded ``ok`` and its file still exists."""
        return item_id in self._ok and target.is_file()

    def append(self, result: ItemResult) -> None:
        """Record a finished item: one line, flushed and fsynced before returning. Thread-safe."""
        with self._guard:
            self._file.write(result.to_json().encode("utf-8") + b"\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            if result.status == "ok":
                self._ok.add(result.id)
            else:
                self._ok.discard(result.id)

    def close(self) -> None:
        with self._guard:
            self._file.close()  # releases the lock


# --- pacing ------------------------------------------------------------------------------------


class Pacer:
    """Paces the requests of a whole batch (each utterance, retries included): a token bucket, and a
    shared pause when throttled.

    The bucket holds one token and refills at ``rpm / 60`` per second (less 2 %), so requests are
    at least ``60 / rpm`` s apart: no second ever sees more than RPM/60 of them (the service's RPS limit
    is RPM/60). A throttle (HTTP 429, or close 1011) pauses every start, not only the throttled item's
    retry, for 1, 2, 4 … up to 30 s, each with jitter (×0.5–1.0) so that clients do not return in
    step; each success halves the next pause again. Alibaba says limits recover within about a minute.

    Args:
        rpm: Session starts per minute; None for no limit.
        rng: Source of the jitter.
    """

    BASE_PAUSE = 1.0
    MAX_PAUSE = 30.0
    SAFETY = 0.02

    def __init__(self, rpm: float | None = None, *, rng: random.Random | None = None) -> None:
        if rpm is not None and rpm <= 0:
            raise InvalidRequestError(f"rpm must be positive, not {rpm}.", field="rpm")
        # 2 % under the limit: what the service counts is when a session reaches it, which network
        # jitter moves by a few milliseconds either way.
        self._interval = 60.0 / rpm * (1 + self.SAFETY) if rpm else 0.0
        self._lock = asyncio.Lock()
        self._rng = rng or random.Random()
        self._next_start = 0.0
        self._paused_until = 0.0
        self._pause_began = -1.0
        self._level = 0
        self.throttles = 0

    @property
    def paused_for(self) -> float:
        """Seconds until starts may resume (0 when not paused)."""
        return max(0.0, self._paused_until - time.monotonic())

    async def permit(self) -> float:
        """Wait until a session may start; return the (monotonic) start time.

        Permits are granted one at a time, each at least one interval after the previous one was
        *granted* (not scheduled), so a late wake-up never brings the next start closer.
        """
        async with self._lock:
            while True:
                now = time.monotonic()
                wait = max(self._paused_until, self._next_start) - now
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            self._next_start = now + self._interval
            return now

    def throttled(self, started: float) -> None:
        """Report a throttle of a session started at ``started``: pause every start."""
        now = time.monotonic()
        if started < self._pause_began and now < self._paused_until:
            return  # started before the current pause: the same episode, already paused for
        pause = min(self.MAX_PAUSE, self.BASE_PAUSE * 2**self._level) * self._rng.uniform(0.5, 1.0)
        self._level = min(self._level + 1, 10)
        self._pause_began = now
        self._paused_until = max(self._paused_until, now + pause)
        self.throttles += 1
        logger.warning("the service is throttling; pausing the batch for %.1f s", pause)

    def succeeded(self) -> None:
        self._level = max(0, self._level - 1)


class _PacedEngine(Engine):
    """One item's view of the shared engine: every session start waits for the pacer, and is counted."""

    name = "paced"
    capabilities = Capabilities(remote=True, streaming=True, instructions=True)

    def __init__(self, inner: Engine, pacer: Pacer) -> None:
        self._inner = inner
        self._pacer = pacer
        self.name = inner.name  # type: ignore[misc]
        self.capabilities = inner.capabilities  # type: ignore[misc]
        self.attempts = 0

    async def stream(self, request: SpeechRequest) -> AsyncIterator[StreamItem]:
        started = await self._pacer.permit()
        self.attempts += 1
        try:
            async with contextlib.aclosing(self._inner.stream(request)) as stream:  # type: ignore[type-var]
                async for item in stream:
                    yield item
        except RateLimitError:
            self._pacer.throttled(started)
            raise
        self._pacer.succeeded()

    async def aclose(self) -> None:
        """The shared engine belongs to the caller of :func:`synthesize_batch`: nothing to close."""


# --- the run -----------------------------------------------------------------------------------


@dataclass
class BatchTally:
    """Running totals of a batch, for progress and the summary line."""

    total: int | None = None
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    audio_ms: int = 0
    characters: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    interrupted: bool = False

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.skipped

    def add(self, result: ItemResult) -> None:
        if result.status == "ok":
            self.ok += 1
            self.audio_ms += result.duration_ms or 0
            self.characters += result.characters or 0
        elif result.status == "failed":
            self.failed += 1
        else:
            self.skipped += 1

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failed": self.failed,
            "skipped": self.skipped,
            "audio_seconds": round(self.audio_ms / 1000, 1),
            "characters": self.characters,
            "wall_seconds": round(time.monotonic() - self.started, 1),
            "interrupted": self.interrupted,
        }

    def summary_line(self) -> str:
        s = self.summary()
        end = " (interrupted)" if self.interrupted else ""
        return (
            f"batch: {s['ok']} ok, {s['failed']} failed, {s['skipped']} skipped, {s['audio_seconds']} s of audio, "
            f"{s['characters']} characters, {s['wall_seconds']} s wall{end}"
        )


def _file_name(item_id: str, audio_format: str) -> str:
    return f"{item_id}{FORMAT_REGISTRY[audio_format].extension}"


async def synthesize_batch(
    items: Iterable[BatchItem],
    out_dir: Path,
    *,
    engine: Engine,
    concurrency: int = 3,
    rpm: float | None = None,
    audio_format: str = "wav",
    retry: RetryOptions | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncGenerator[ItemResult, None]:
    """Synthesize ``items`` into ``out_dir``, yielding each item's result as it ends.

    Items already recorded ``ok`` in ``out_dir/manifest.jsonl`` whose file exists are yielded as
    ``skipped``; the others are synthesized, at most ``concurrency`` at once, and recorded in the
    manifest before they are yielded. A failed item is recorded and the batch goes on, except after
    an :class:`~.errors.AuthenticationError`, which every later item would meet too: then no new
    item starts. Items are taken from ``items`` as they are needed, so an iterator over a large
    file is never held in memory.

    Stopping: when ``stop`` is set (a signal handler does this), no new item starts and the items in
    flight are cancelled, leaving no file and no manifest line; the generator then ends. Closing
    the generator early, or cancelling its consumer, does the same.

    Args:
        items: Validated items (:func:`read_input`, or :meth:`BatchItem.build`); ids must be unique.
        out_dir: Output directory; created when needed.
        engine: The engine every item shares (one pool of connections); not closed here.
        concurrency: Items in flight at once.
        rpm: Requests (utterances) per minute (:class:`Pacer`); None for no limit.
        audio_format: The output format (:data:`~.formats.FORMAT_NAMES`); the file's extension follows it.
        retry: Retries per item before its first audio; default :data:`BATCH_RETRY`.
        stop: Set it to stop the batch cleanly.

    Raises:
        InvalidRequestError: Bad options, or a duplicate id (raised when it is reached).
        ConfigurationError: ``out_dir`` cannot be written, or another batch is writing there.
    """
    if concurrency < 1:
        raise InvalidRequestError(f"concurrency must be at least 1, not {concurrency}.", field="concurrency")
    # An unknown format, or one this machine's libsndfile cannot encode, fails here, before any paid call.
    check_format(resolve_format(audio_format), 24000)
    pacer = Pacer(rpm)
    retry = retry or BATCH_RETRY
    out_dir = out_dir.absolute()
    ledger = await anyio.to_thread.run_sync(Ledger, out_dir)

    async def run(item: BatchItem) -> tuple[ItemResult, bool]:
        """The item's result, and whether its failure would be every later item's (a refused key)."""
        paced = _PacedEngine(engine, pacer)
        name = _file_name(item.id, audio_format)
        try:
            response = await synthesize(
                item.request, paced, output="file", path=out_dir / name, retry=retry, format=audio_format
            )
        except TTSError as exc:
            failed = ItemResult(id=item.id, status="failed", error=_one_sentence(exc), attempts=paced.attempts)
            await record(failed)
            return failed, isinstance(exc, (AuthenticationError, ConfigurationError))
        ok = ItemResult(
            id=item.id,
            status="ok",
            file=name,
            duration_ms=response.duration_ms,
            characters=response.characters,
            first_audio_ms=response.first_audio_ms,
            segments=response.segments,
            attempts=paced.attempts,
        )
        await record(ok)
        return ok, False

    async def record(result: ItemResult) -> None:
        # In the item's own task, so that no other slot waits for this fsync. Shielded: an item whose
        # file is in place must get its line even when the batch is stopping (a plain asyncio cancel
        # still interrupts the wait, but not the thread, and close() waits for the thread).
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(ledger.append, result)

    running: set[asyncio.Task[tuple[ItemResult, bool]]] = set()
    stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
    source = iter(items)
    seen: set[str] = set()
    more, halted = True, False
    try:
        while True:
            while more and not halted and len(running) < concurrency and not (stop and stop.is_set()):
                item = next(source, None)
                if item is None:
                    more = False
                    break
                if item.id.lower() in seen:
                    raise InvalidRequestError(f"Duplicate id {_excerpt(item.id)} in the batch.", field="id")
                seen.add(item.id.lower())
                if ledger.is_done(item.id, out_dir / _file_name(item.id, audio_format)):
                    yield ItemResult(id=item.id, status="skipped", file=_file_name(item.id, audio_format))
                    continue
                running.add(asyncio.ensure_future(run(item)))
            if not running or (stop is not None and stop.is_set()):
                break
            waiting: set[asyncio.Future[Any]] = set(running)
            if stopping is not None:
                waiting.add(stopping)
            finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            ended = [t for t in running if t in finished]
            running.difference_update(ended)
            for task in ended:
                result, halts = task.result()  # already recorded by its task
                if halts and not halted:
                    halted = True
                    logger.warning("stopping the batch: %s", result.error)
                yield result
        for result in await _cancel(running):
            yield result
    finally:
        if stopping is not None:
            stopping.cancel()
        with anyio.CancelScope(shield=True):
            await _cancel(running)
            await anyio.to_thread.run_sync(ledger.close)


async def _cancel(running: set[asyncio.Task[tuple[ItemResult, bool]]]) -> list[ItemResult]:
    """Cancel the items in flight and wait for them; return the results of those that ended anyway.

    A cancelled item leaves nothing behind: :func:`~.output.atomic_write` removes its temporary file.
    """
    if not running:
        return []
    for task in running:
        task.cancel()
    await asyncio.wait(running)
    results = [task.result()[0] for task in running if not task.cancelled()]
    running.clear()
    return results


def _one_sentence(exc: TTSError) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:299] + "…"

"""The realtime probe: does realtime synthesis work in this runtime, and if not, can we still speak?

Run as ``scripts/realtime_tts_demo.py --text "…"`` or ``alicloud-tts-realtime probe --text "…"``.

1. The realtime probe speaks ``--text`` through the native WebSocket client, the same engine the
   package uses, and records how far it got: ``credentials`` → ``handshake`` →
   ``session.created`` → ``session.updated`` → ``first_audio`` → ``response.done`` →
   ``session.finished``. Its audio is saved (default ``<OUTPUT_DIR>/ai-audio-tts-realtime/audio/probe.wav``).
2. The runtime report names Python, the package, websockets and ``dashscope`` versions, and
   whether the official SDK's ``QwenTtsRealtime`` completes the same session (``sdk_session``).
3. With ``--fallback``, when the realtime probe failed, the text is synthesized by the
   non-realtime HTTP API with SSE streaming (``qwen3-tts-instruct-flash`` with an instruction,
   ``qwen3-tts-flash`` without) and saved (default ``…/audio/fallback-demo.wav``).

stdout gets exactly one line of JSON, ``{"realtime_probe": {…}, "fallback": {…}}`` (``fallback``
only when attempted); every failure is reported there, never as a traceback. stderr gets a one-line
summary or hint when something failed.

Exit codes:
    0: the realtime probe passed; or, without ``--strict``, the fallback produced audio.
    1: no audio came out; or a configuration error (missing key, invalid request), before
       anything was sent: the hint on stderr says what to fix.
    2: ``--strict`` and the realtime probe failed, whatever the fallback did.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__, catalog, errors
from .errors import LocalError, RemoteError, TTSError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_STRICT", "STAGES", "add_arguments", "build_parser", "main", "run"]

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_STRICT = 0, 1, 2
STAGES: tuple[str, ...] = (
    "credentials",
    "handshake",
    "session.created",
    "session.updated",
    "first_audio",
    "response.done",
    "session.finished",
)
_EVENT_STAGES = {"response.audio.delta": "first_audio"}  # other stages are event types as they are
PROBE_FILE = "probe.wav"
FALLBACK_FILE = "fallback-demo.wav"


def add_arguments(parser: argparse.ArgumentParser, *, verbose_default: Any = 0) -> None:
    """Add the probe's options to ``parser`` (the script's own, or the CLI's ``probe`` subcommand)."""
    parser.add_argument("--text", required=True, help="the text to speak")
    parser.add_argument("--voice", default="Cherry", help="system voice (default: Cherry)")
    parser.add_argument("--instruction", help="style instruction (instruct models only)")
    parser.add_argument("--language-type", help="language hint, e.g. English or Chinese")
    parser.add_argument(
        "--model",
        default=catalog.DEFAULT_INSTRUCT_MODEL,
        help=f"realtime model to probe (default: {catalog.DEFAULT_INSTRUCT_MODEL})",
    )
    parser.add_argument(
        "--fallback", action="store_true", help="if the realtime probe fails, synthesize over the HTTP API instead"
    )
    parser.add_argument(
        "--fallback-model",
        help=f"HTTP model for --fallback (default: {catalog.DEFAULT_HTTP_INSTRUCT_MODEL} with an instruction, "
        f"else {catalog.DEFAULT_HTTP_MODEL})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"WAV path (default: OUTPUT_DIR/ai-audio-tts-realtime/audio/{PROBE_FILE}, or {FALLBACK_FILE} "
        "for the fallback)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 2 when the realtime probe fails, even if the fallback worked"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON report (the default and only format)")
    parser.add_argument(
        "--no-sdk-check",
        dest="sdk_check",
        action="store_false",
        help="skip the official-SDK compatibility session (it speaks the text a second time)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=verbose_default, help="more logs on stderr (-v info, -vv debug)"
    )


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The probe's argument parser; building it needs no key, no network and no SDK."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Check that Qwen TTS realtime synthesis works here; optionally fall back to the HTTP API. "
        "Prints one line of JSON.",
        epilog="Exit codes: 0 realtime works (or, without --strict, the fallback produced audio); "
        "1 no audio, or a configuration error such as a missing key; 2 --strict and realtime failed.",
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the probe with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    from .log import configure_logging, stdout_closed

    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        code = run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        return stdout_closed()
    return code


def run(args: argparse.Namespace) -> int:
    """Run the probe for parsed ``args``: print the JSON line, return the exit code.

    Nothing escapes as a traceback: an unexpected failure is logged (with its traceback at DEBUG)
    and reported in the JSON as ``InternalError``.
    """
    # Both entry points (main() here and the CLI's probe) call configure_logging first, which
    # already keeps websocket-client's handshake logs quiet below -vv.
    if (getattr(args, "verbose", 0) or 0) < 1:
        # The fallback's retry is logged as a warning; the report has the outcome.
        for name in ("service", "stream"):  # the stream's segments retry
            logging.getLogger(f"{__package__}.{name}").setLevel(logging.ERROR)
    try:
        report, code, message = asyncio.run(_probe(args))
    except KeyboardInterrupt:
        report = {"realtime_probe": _failed(args.model, None, "Interrupted", "interrupted")}
        code, message = 130, "interrupted"
    except ModuleNotFoundError as exc:
        hint = missing_dependency(exc.name)
        report = {"realtime_probe": _failed(args.model, None, "EngineUnavailableError", hint)}
        code, message = EXIT_FAILED, f"error: {hint}"
    except Exception as exc:  # the probe's contract: a JSON report, never a traceback
        logger.debug("probe failed unexpectedly", exc_info=True)
        report = {"realtime_probe": _failed(args.model, None, "InternalError", f"{type(exc).__name__}: {exc}")}
        code, message = EXIT_FAILED, f"error: the probe failed unexpectedly ({type(exc).__name__}); run with -vv"
    print(json.dumps(report, ensure_ascii=False), flush=True)
    if message:
        print(message, file=sys.stderr)
    return code


def missing_dependency(name: str | None, folder: Path | None = None) -> str:
    """The hint for a dependency missing from this Python (a copied skill folder, a bare python3).

    The package is not on PyPI, so the hint installs the project folder itself: ``folder``
    (default: the one holding this package, ``<folder>/skill/alicloud_tts_realtime``).
    """
    top = (name or "?").split(".")[0]
    folder = folder or Path(__file__).absolute().parents[2]
    if not (folder / "pyproject.toml").is_file():
        return (
            f"missing Python package {top!r}; reinstall alicloud-ai-audio-tts-realtime with its dependencies "
            "from its project folder (pip install -e '<folder>[offline]')"
        )
    quoted = shlex.quote(f"{folder}[offline]")
    return (
        f"missing Python package {top!r}; install the skill folder with its dependencies: pip install -e {quoted} "
        f"(or run it without installing: uvx --from {shlex.quote(str(folder))} alicloud-tts-realtime …)"
    )


def _public(url: str) -> str:
    """``url`` without user info, query or fragment, for the report (they may hold credentials)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _failed(model: str, stage: str | None, kind: str, message: str) -> dict[str, Any]:
    return {"ok": False, "model": model, "stage": stage, "error": {"type": kind, "message": message}}


def _error(exc: BaseException) -> dict[str, Any]:
    """JSON of an error: type, message, and the structured fields when there are any."""
    if isinstance(exc, OSError) and not isinstance(exc, TTSError):
        where = f" {exc.filename}" if exc.filename else ""
        return {"type": "OutputError", "message": f"Cannot write{where}: {exc.strerror or exc}", "retryable": False}
    data: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, TTSError):
        data["retryable"] = exc.retryable
    if isinstance(exc, RemoteError):
        data.update({k: v for k, v in (("status", exc.status), ("code", exc.code), ("request_id", exc.request_id))
                     if v is not None})  # fmt: skip
    return data


class _Stages:
    """The furthest stage reached and when (milliseconds since the start)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.reached: str | None = None
        self.at_ms: dict[str, int] = {}

    def elapsed_ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)

    def mark(self, name: str) -> None:
        stage = _EVENT_STAGES.get(name, name)
        if stage in STAGES and stage not in self.at_ms:
            self.at_ms[stage] = self.elapsed_ms()
            if self.reached is None or STAGES.index(stage) > STAGES.index(self.reached):
                self.reached = stage


class _ObservedConnection:
    """A websockets connection that reports the type of every frame it receives."""

    def __init__(self, ws: Any, mark: Callable[[str], None]) -> None:
        self._ws = ws
        self._mark = mark

    async def recv(self) -> Any:
        frame = await self._ws.recv()
        try:
            kind = json.loads(frame).get("type")
        except (ValueError, TypeError, AttributeError):
            kind = None  # the engine itself reports malformed frames
        if isinstance(kind, str):
            self._mark(kind)
        return frame

    def __getattr__(self, name: str) -> Any:  # send, close …: the real connection's
        return getattr(self._ws, name)


def _observed_connect(mark: Callable[[str], None]) -> Callable[..., Any]:
    """A ``connect`` for :class:`RealtimeEngine`'s seam that marks the handshake and each event."""
    from websockets.asyncio.client import connect

    async def observed(url: str, **kwargs: Any) -> _ObservedConnection:
        ws = await connect(url, **kwargs)
        mark("handshake")
        return _ObservedConnection(ws, mark)

    return observed


async def _attempt(engine: Any, request: Any, stages: _Stages, output: Path | None, retries: int = 0) -> dict[str, Any]:
    """Synthesize ``request`` once with ``engine`` (closed afterwards); the measured part of a report."""
    from .service import RetryOptions, synthesize

    chunks = 0

    async def count(_chunk: Any) -> None:
        nonlocal chunks
        chunks += 1
        stages.mark("first_audio")

    result: dict[str, Any] = {"ok": False}
    try:
        async with engine:
            response = await synthesize(
                request,
                engine,
                output="file" if output is not None else "chunks",
                path=output,
                on_chunk=count,
                retry=RetryOptions(max_retries=retries),
            )
    except (TTSError, OSError) as exc:
        response, result["error"] = None, _error(exc)
    except ModuleNotFoundError as exc:
        response = None
        result["error"] = {
            "type": "EngineUnavailableError",
            "message": missing_dependency(exc.name),
            "retryable": False,
        }
    except Exception as exc:  # a bug or an odd library error: this section fails, the report survives
        logger.debug("%s engine failed unexpectedly", getattr(engine, "name", "?"), exc_info=True)
        response = None
        result["error"] = {"type": "InternalError", "message": f"{type(exc).__name__}: {exc}", "retryable": False}
    else:
        result["ok"], result["error"] = True, None
    result.update(
        stage=stages.reached,
        chunk_count=chunks,
        first_audio_ms=stages.at_ms.get("first_audio"),
        total_ms=stages.elapsed_ms(),
        audio_ms=response.duration_ms if response else None,
        characters=response.characters if response else None,
        session_id=response.session_id if response else None,
        output=response.file_path if response else None,
    )
    return result


async def _realtime_probe(request: Any, settings: Any, output: Path) -> dict[str, Any]:
    """The native client's session, observed through its ``connect`` seam; no retries."""
    from .engines.realtime import RealtimeEngine

    stages = _Stages()
    stages.mark("credentials")
    engine = RealtimeEngine(settings, connect=_observed_connect(stages.mark))
    result = await _attempt(engine, request, stages, output)
    return {
        "ok": result.pop("ok"),
        "model": request.model,
        "voice": request.voice,
        "endpoint": _public(settings.realtime_url),
    } | result


async def _sdk_session(request: Any, settings: Any) -> dict[str, Any]:
    """Whether the official SDK's ``QwenTtsRealtime`` completes the same session, and how fast."""
    from .engines.sdk import SdkEngine, require_sdk

    try:
        require_sdk()  # imported before the clock starts: the import is not the SDK's latency
    except TTSError as exc:
        return {"ok": False, "error": _error(exc)}
    stages = _Stages()
    stages.mark("credentials")
    result = await _attempt(SdkEngine(settings, observer=stages.mark), request, stages, None)
    for unused in ("audio_ms", "characters", "output"):
        del result[unused]
    return result | {"connect_ms": stages.at_ms.get("handshake")}


async def _runtime(request: Any, settings: Any, *, skip: str | None) -> dict[str, Any]:
    """Versions, and the SDK session unless ``skip`` gives a reason not to run it."""
    import importlib.metadata

    from .engines.sdk import sdk_version

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    runtime: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(terse=True),
        "package": __version__,
        "websockets": version("websockets"),
        "dashscope": sdk_version(),
    }
    if runtime["dashscope"] is None:
        skip = "the dashscope SDK is not installed"
    if skip is not None:
        runtime["sdk_session"] = {"ok": None, "skipped": skip}
    else:
        runtime["sdk_session"] = await _sdk_session(request, settings)
    return runtime


async def _fallback(request: Any, settings: Any, model: str, output: Path) -> dict[str, Any]:
    """The HTTP API (SSE) with ``model``; one retry, since the point is to get audio."""
    from .engines.http_sse import HttpEngine

    engine = HttpEngine(settings, model=model)
    result = await _attempt(engine, request, _Stages(), output, retries=1)
    result["request_id"] = result.pop("session_id") or (result["error"] or {}).get("request_id")
    del result["stage"]
    return {"ok": result.pop("ok"), "model": model, "engine": engine.name, "endpoint": _public(engine.url)} | result


async def _probe(args: argparse.Namespace) -> tuple[dict[str, Any], int, str | None]:
    """The whole probe: returns the report, the exit code and the stderr line (if any)."""
    from .models import build_request
    from .settings import load_settings

    probe: dict[str, Any] = {"ok": False, "model": args.model, "stage": None}
    report: dict[str, Any] = {"realtime_probe": probe}
    settings = request = None
    try:
        settings = load_settings()
        request = build_request(
            text=args.text,
            voice=args.voice,
            instruction=args.instruction,
            model=args.model,
            language_type=args.language_type,
        )
        fallback_model = args.fallback_model or (
            catalog.DEFAULT_HTTP_INSTRUCT_MODEL if request.instruction else catalog.DEFAULT_HTTP_MODEL
        )
        if args.fallback:  # a fallback that cannot work is found now, not after the realtime session
            from .engines.http_sse import HttpEngine

            HttpEngine(settings, model=fallback_model).model_for(request)
        else:
            catalog.http_model_info(fallback_model)
        if settings.api_key is None:  # reported before anything is sent; the probe has no offline mode
            note = f" ({settings.key_note})" if settings.key_note else ""
            raise errors.ConfigurationError(
                "No DashScope API key: set DASHSCOPE_API_KEY, or dashscope_api_key in ~/.alibabacloud/credentials"
                f"{note}; to try the probe without an account, run alicloud-tts-realtime emulator and set the "
                "three variables it prints."
            )
    except LocalError as exc:
        probe["error"] = _error(exc)
        if settings is not None:
            probe["runtime"] = await _runtime(None, settings, skip="configuration error")
        return report, EXIT_FAILED, f"error: {exc}"

    output = args.output or settings.audio_dir / PROBE_FILE
    report["realtime_probe"] = probe = await _realtime_probe(request, settings, output)
    error = probe["error"]
    if error is not None and issubclass(getattr(errors, error["type"], Exception), LocalError):
        # A bad URL or the like: the SDK and the fallback would fail the same way.
        probe["runtime"] = await _runtime(request, settings, skip="configuration error")
        return report, EXIT_FAILED, f"error: {error['message']}"
    probe["runtime"] = await _runtime(request, settings, skip=None if args.sdk_check else "--no-sdk-check")
    if probe["ok"]:
        return report, EXIT_OK, None
    # The same stage as the JSON's "stage": the furthest one reached before the failure.
    reached = probe["stage"]
    where = f"before stage {STAGES[0]}" if reached is None else f"after stage {reached}"
    message = f"realtime probe failed {where}: {error['message'].rstrip('.')}"
    fallback_ok = False
    if args.fallback:
        fallback = await _fallback(request, settings, fallback_model, args.output or settings.audio_dir / FALLBACK_FILE)
        report["fallback"] = fallback
        fallback_ok = fallback["ok"]
        message += "; fallback " + (
            f"produced {fallback['output']}" if fallback_ok else f"failed too: {fallback['error']['message']}"
        )
    if args.strict:
        return report, EXIT_STRICT, message
    return report, EXIT_OK if fallback_ok else EXIT_FAILED, message

"""Command line: ``alicloud-tts-realtime speak | batch | voices | emulator | serve | probe``.

Results go to stdout; diagnostics and the one-line error go to stderr.

Exit codes:
    0: success.
    1: the synthesis or the service failed (remote error, no audio, timeout).
    2: invalid usage, request or configuration (nothing was sent).
    130: interrupted.
    141: stdout was closed by the reader (e.g. ``voices --json | head -1``); nothing is printed.
The ``probe`` subcommand has its own codes (see :mod:`.probe` and ``scripts/realtime_tts_demo.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio

from . import __version__, catalog
from . import probe as probe_module
from .errors import InvalidRequestError, LocalError, ResponseTimeoutError, TTSError
from .log import configure_logging, stdout_closed

__all__ = ["main"]

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _build_parser() -> argparse.ArgumentParser:
    from .engines import ENGINE_CHOICES
    from .formats import FORMAT_NAMES

    parser = argparse.ArgumentParser(
        prog="alicloud-tts-realtime",
        description="Speak text with Alibaba Cloud Qwen TTS Realtime (or the offline eSpeak NG default).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logs on stderr (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # -v works before or after the subcommand (README shows "serve -v"): each subparser has it too,
    # with no default of its own so that a -v before the subcommand is kept.
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more logs on stderr (-v info, -vv debug)"
    )

    speak = sub.add_parser("speak", parents=[verbose], help="synthesize TEXT to an audio file (WAV by default)")
    speak.add_argument(
        "text",
        help="the text to speak, any length; '-' reads standard input and speaks each sentence as soon as it is "
        "complete (e.g. piped from an LLM), the end of input flushing the rest",
    )
    speak.add_argument("--voice", default="Cherry", help="system voice (default: Cherry)")
    speak.add_argument("--instruction", help="style instruction (selects an instruct model)")
    speak.add_argument("--sample-rate", type=int, default=catalog.DEFAULT_SAMPLE_RATE, choices=catalog.SAMPLE_RATES)
    speak.add_argument("--model", help=f"realtime model (default: {catalog.DEFAULT_MODEL})")
    speak.add_argument("--language-type", help="language hint, e.g. English or Chinese")
    speak.add_argument(
        "--engine",
        default="auto",
        choices=ENGINE_CHOICES,
        help="auto (default): realtime when an API key is configured, else offline; fallback: realtime, then "
        "the HTTP API if realtime fails before any audio; http: the HTTP API only; sdk: the official SDK",
    )
    speak.add_argument(
        "--output", type=Path, help="file path (default: a fresh name under OUTPUT_DIR/ai-audio-tts-realtime/audio/)"
    )
    speak.add_argument(
        "--format",
        choices=FORMAT_NAMES,
        help="wav (default), mp3, ogg (Opus), flac or pcm (raw s16le); default: the one --output's extension names",
    )
    speak.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="S",
        help="overall limit in seconds for the call, retries and fallback included (default: 120, or 0.1 s per "
        "character when that is more, so a long text is never cut off for being long; none for '-')",
    )
    speak.add_argument(
        "--markdown",
        action="store_true",
        help="TEXT is Markdown: speak it as a person would read it (no markup, link words only, URLs as host "
        "names, code blocks as 'Code block omitted.', no emoji)",
    )
    speak.add_argument("--json", action="store_true", help="print the JSON response instead of the path")
    speak.add_argument("--chunks", action="store_true", help="with --json, include the base64 PCM chunks")
    speak.add_argument(
        "--play", action="store_true", help="play it on this machine's speaker as it arrives (the WAV is still saved)"
    )
    speak.add_argument("--no-save", action="store_true", help="with --play, do not save a WAV file")
    speak.add_argument(
        "--keep-partial",
        action="store_true",
        help="when the synthesis fails after some audio, keep it as <name>.partial.wav (default: no file)",
    )

    _add_batch_parser(sub, verbose)

    voices = sub.add_parser("voices", parents=[verbose], help="list models and their voices")
    voices.add_argument("--model", help="only this model")
    voices.add_argument("--json", action="store_true", help="print JSON")

    emulator = sub.add_parser("emulator", parents=[verbose], help="run the local DashScope emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=_port, default=0, help="port (default: any free port)")
    emulator.add_argument("--latency-ms", type=float, default=0.0, help="delay before the first audio delta")
    emulator.add_argument(
        "--rtf", type=float, default=0.0, help="pacing as a real-time factor (0: as fast as possible)"
    )
    emulator.add_argument("--api-key", default="sk-emulator", help="the key clients must send (default: sk-emulator)")
    emulator.add_argument("--audio", default="auto", choices=("auto", "speech", "signal"))
    faults = emulator.add_argument_group("faults of the realtime WebSocket (the HTTP API is unaffected)")
    faults.add_argument(
        "--reject-status", type=int, metavar="STATUS", help="refuse every upgrade with this HTTP status, e.g. 503"
    )
    faults.add_argument(
        "--throttle", action="store_true", help="accept the upgrade, then close 1011 before any event (rate limit)"
    )
    faults.add_argument(
        "--handshake-delay-ms", type=float, default=0.0, metavar="MS", help="delay before answering the upgrade"
    )
    faults.add_argument(
        "--fail-after-chunks", type=int, metavar="N", help="after N audio deltas: a server_error event, close 1011"
    )
    faults.add_argument(
        "--drop-after-chunks", type=int, metavar="N", help="after N audio deltas: drop the connection (1006)"
    )
    faults.add_argument(
        "--unknown-model",
        default="close",
        choices=("close", "error"),
        help="an unknown model: close silently after session.created (observed, default) or send an error",
    )
    faults.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="a scripted fault, repeatable: conn=N and response=N pick the 1-based connection and response "
        "(default: every one), then drop-after=N, fail-after=N, reject=STATUS, throttle or close-idle; "
        "e.g. conn=1:drop-after=2 or conn=2:response=1:fail-after=0",
    )
    limits = emulator.add_argument_group("limits and choices where the real service is unknown")
    limits.add_argument(
        "--idle-close-s",
        type=float,
        metavar="S",
        help="close 1000 'idle timeout' after S seconds without client events",
    )
    limits.add_argument(
        "--max-connections", type=int, metavar="N", help="refuse upgrades beyond N open connections with HTTP 429"
    )
    limits.add_argument(
        "--commit-while-responding",
        default="queue",
        choices=("queue", "reject"),
        help="a commit during a response: queued after it (default) or rejected with an error",
    )
    limits.add_argument(
        "--max-commit-chars", type=int, metavar="N", help="answer a commit of more than N characters with an error"
    )
    limits.add_argument(
        "--max-session-records", type=int, default=64, metavar="N", help="connection records kept (default 64)"
    )
    limits.add_argument(
        "--max-events-per-session",
        type=int,
        default=256,
        metavar="N",
        help="events kept per connection record (default 256)",
    )

    from .engines import ENGINE_CHOICES

    probe = sub.add_parser(
        "probe",
        help="check that realtime synthesis works here (one line of JSON; see scripts/realtime_tts_demo.py)",
        description="Check that Qwen TTS realtime synthesis works here; optionally fall back to the HTTP API.",
        epilog="Exit codes: 0 realtime works (or, without --strict, the fallback produced audio); 1 no audio, "
        "or a configuration error such as a missing key; 2 --strict and realtime failed.",
    )
    probe_module.add_arguments(probe, verbose_default=argparse.SUPPRESS)  # -v may come before or after

    serve = sub.add_parser("serve", parents=[verbose], help="run the MCP server (stdio by default)")
    serve.add_argument(
        "--transport", default="stdio", choices=("stdio", "http"), help="stdio (default) or Streamable HTTP at /mcp"
    )
    serve.add_argument("--host", default="127.0.0.1", help="HTTP interface (default: 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=_port, default=8765, help="HTTP port (default: 8765; 0: any free port)")
    token = serve.add_mutually_exclusive_group()
    token.add_argument(
        "--auth-token-file",
        metavar="PATH",
        help="file whose first line is the bearer token required over HTTP (or set TTS_MCP_AUTH_TOKEN); "
        "mandatory on a non-loopback --host",
    )
    token.add_argument("--auth-token", help="the token itself (visible in ps: prefer the file or the variable)")
    serve.add_argument(
        "--allowed-host",
        dest="allowed_hosts",
        action="append",
        metavar="NAME[:PORT]",
        help="a Host header /mcp accepts (repeatable), e.g. tts.example.com; others get 421",
    )
    serve.add_argument(
        "--allowed-origin",
        dest="allowed_origins",
        action="append",
        metavar="ORIGIN",
        help="a browser Origin /mcp accepts (repeatable), e.g. https://app.example.com; others get 403",
    )
    serve.add_argument(
        "--request-timeout",
        type=float,
        metavar="S",
        help="seconds a connection has to send a whole request; idle connections close after it too (default: 10)",
    )
    serve.add_argument(
        "--max-connections", type=int, metavar="N", help="open HTTP connections at most; more get 503 (default: 256)"
    )
    serve.add_argument(
        "--engine",
        default="auto",
        choices=ENGINE_CHOICES,
        help="auto (default): realtime when an API key is configured, else offline",
    )
    serve.add_argument(
        "--list-dotted-alias",
        action="store_true",
        help="also list the dotted tool name tts.realtime (always callable; some clients reject dots)",
    )
    serve.add_argument(
        "--no-prewarm",
        action="store_true",
        help="do not open a realtime session for the default voice at start (opened when a key is configured)",
    )
    serve.add_argument("--max-text-chars", type=int, help="longest text per call (default: 20000)")
    serve.add_argument(
        "--deadline",
        type=float,
        help="seconds allowed per call, queueing included (default: 120, or 0.1 s per character when more)",
    )
    serve.add_argument("--stall", type=float, help="fail a call that gets no audio for this many seconds (default: 30)")
    serve.add_argument("--max-concurrent", type=int, help="syntheses at once; more calls queue (default: 4)")
    return parser


def _cmd_speak(args: argparse.Namespace) -> int:
    from .engines import select_engine
    from .models import AudioChunk, build_request
    from .playback import NO_PLAYER, Playback, PlayerFinder
    from .service import synthesize
    from .settings import load_settings
    from .speakable import speakable_text

    if args.no_save and not args.play:
        raise InvalidRequestError("--no-save needs --play (otherwise the audio would go nowhere).", field="output")
    if args.no_save and args.output is not None:
        raise InvalidRequestError("--no-save and --output contradict each other; drop one.", field="output")

    from .stream import STREAM_TEXT

    from_stdin = args.text == "-"
    # By default the limit grows with the text; stdin may go on for as long as its writer does.
    default_limit = math.inf if from_stdin else max(120.0, 0.1 * len(args.text))
    limit: float = args.timeout if args.timeout is not None else default_limit
    request = build_request(
        text=STREAM_TEXT if from_stdin else (speakable_text(args.text) if args.markdown else args.text),
        voice=args.voice,
        instruction=args.instruction,
        sample_rate=args.sample_rate,
        model=args.model,
        language_type=args.language_type,
    )
    settings = load_settings()
    engine, reason = select_engine(settings, args.engine)
    print(f"engine: {reason}", file=sys.stderr)

    async def run() -> str | None:
        playback: Playback | None = None
        if args.play:
            playback = await PlayerFinder().open(request.sample_rate)
            if playback is None:
                print(f"playback: unavailable ({NO_PLAYER})", file=sys.stderr)
            else:
                print(f"playback: {playback.player} ({playback.mode})", file=sys.stderr)
                await playback.start()  # ready before the first audio

        async def on_chunk(chunk: AudioChunk) -> None:
            assert playback is not None
            await playback.write(chunk.pcm)

        try:
            async with engine:
                try:
                    with anyio.fail_after(limit):  # one limit for the retries and the fallback together
                        response = await synthesize(
                            request,
                            engine,
                            output="chunks" if args.no_save else "both" if args.json and args.chunks else "file",
                            path=args.output,
                            audio_dir=settings.audio_dir,
                            on_chunk=on_chunk if playback is not None else None,
                            format=args.format,
                            max_segment_chars=settings.max_segment_chars,
                            keep_partial=args.keep_partial,
                            text_pieces=stdin_pieces() if from_stdin else None,
                        )
                except TimeoutError as exc:
                    if isinstance(exc, TTSError):  # an engine's own timeout, already one sentence
                        raise
                    raise ResponseTimeoutError(
                        f"The synthesis did not finish within the {limit:g} s limit (--timeout); nothing "
                        "was saved. Try again, or with shorter text or a larger --timeout."
                    ) from None
            if playback is not None:
                await playback.close()
                if not args.json and response.file_path:
                    print(response.file_path, flush=True)  # the file is there while the sound plays
                await playback.finished()
                if playback.error:
                    print(f"playback: {playback.error}", file=sys.stderr)
        finally:
            if playback is not None:
                await playback.stop()
        if args.json:
            return response.model_dump_json()
        if playback is not None:
            return None  # printed above, before the end of the sound
        return str(response.file_path)

    printed = asyncio.run(run())
    if printed is not None:
        print(printed)
    return EXIT_OK


async def stdin_pieces(read_bytes: int = 4096) -> AsyncIterator[str]:
    """Standard input as text, piece by piece as it arrives, without blocking the event loop.

    Each read runs in one of anyio's bounded worker threads (``read1`` returns whatever is
    available, so a sentence is seen as soon as it is written, not when a buffer fills); a cancel
    abandons the blocked read. UTF-8 is decoded incrementally, so a character split across reads
    stays whole; undecodable bytes become U+FFFD.
    """
    import codecs

    import anyio.to_thread

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stream = sys.stdin.buffer
    read = getattr(stream, "read1", stream.read)
    while True:
        data: bytes = await anyio.to_thread.run_sync(read, read_bytes, abandon_on_cancel=True)
        text = decoder.decode(data, final=not data)
        if text:
            yield text
        if not data:
            return


def _add_batch_parser(sub: Any, verbose: argparse.ArgumentParser) -> None:
    from .batch import FORMATS
    from .engines import ENGINE_CHOICES

    batch = sub.add_parser(
        "batch",
        parents=[verbose],
        help="synthesize every line of a JSON Lines file to its own file (resumable, paced)",
        description="Synthesize each line of INPUT, a JSON object with 'id' and 'text' (and optionally 'voice', "
        "'instruction', 'model', 'sample_rate', 'language_type', overriding the flags), to DIR/<id>.wav. The whole "
        "input is checked first; DIR/manifest.jsonl records each finished item, and running the same command "
        "again skips what is done and retries what failed.",
        epilog="Exit codes: 0 all items ok; 1 some failed; 2 invalid input or usage (nothing was sent); "
        "130 interrupted (rerun to resume).",
    )
    batch.add_argument("input", type=Path, metavar="INPUT.jsonl", help="one JSON object per line")
    batch.add_argument("--out-dir", type=Path, required=True, metavar="DIR", help="where the files and manifest go")
    batch.add_argument(
        "--concurrency", type=_positive_int, metavar="N", help="items at once (default: DASHSCOPE_MAX_CONNECTIONS, 3)"
    )
    batch.add_argument(
        "--rpm", type=_positive_float, metavar="N", help="at most N requests (utterances) per minute, evenly spaced"
    )
    batch.add_argument("--voice", default="Cherry", help="voice for items without one (default: Cherry)")
    batch.add_argument("--instruction", help="style instruction for items without one")
    batch.add_argument("--model", help=f"model for items without one (default: {catalog.DEFAULT_MODEL})")
    batch.add_argument("--sample-rate", type=int, choices=catalog.SAMPLE_RATES, help="for items without one")
    batch.add_argument("--language-type", help="language hint for items without one")
    batch.add_argument("--engine", default="auto", choices=ENGINE_CHOICES, help="as for speak (default: auto)")
    batch.add_argument("--format", default="wav", choices=FORMATS, help="output format of every file (default: wav)")
    batch.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")


def _positive_int(value: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def _positive_float(value: str) -> float:
    """An argparse type: a number above 0."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {value}")
    return number


def _cmd_batch(args: argparse.Namespace) -> int:
    import signal

    from .batch import BatchTally, check_input, read_input, synthesize_batch
    from .engines import select_engine
    from .errors import InvalidInputError
    from .progress import show_progress
    from .settings import load_settings

    defaults = {
        "voice": args.voice,
        "instruction": args.instruction,
        "model": args.model,
        "sample_rate": args.sample_rate,
        "language_type": args.language_type,
    }
    try:
        total = check_input(args.input, defaults)  # the whole file, before any connection
    except InvalidInputError as exc:
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        if exc.count > len(exc.problems):
            print(f"  … and {exc.count - len(exc.problems)} more", file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings = load_settings()
    engine, reason = select_engine(settings, args.engine)
    print(f"engine: {reason}", file=sys.stderr)
    tally = BatchTally(total=total)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for number in signals:
            try:
                loop.add_signal_handler(number, stop.set)
            except NotImplementedError:  # Windows: no loop signal handlers
                signal.signal(number, lambda *_: loop.call_soon_threadsafe(stop.set))
        try:
            async with engine, show_progress(tally):
                results = synthesize_batch(
                    read_input(args.input, defaults),
                    args.out_dir,
                    engine=engine,
                    concurrency=args.concurrency or settings.max_connections,
                    rpm=args.rpm,
                    audio_format=args.format,
                    stop=stop,
                )
                async with contextlib.aclosing(results):
                    async for result in results:
                        tally.add(result)
                        if result.status == "failed":
                            logger.warning("%s failed: %s", result.id, result.error)
        finally:
            for number in signals:
                with contextlib.suppress(NotImplementedError):
                    loop.remove_signal_handler(number)
            tally.interrupted = stop.is_set()

    asyncio.run(run())
    print(tally.summary_line(), file=sys.stderr)
    if args.json:
        print(json.dumps(tally.summary()))
    if tally.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if tally.failed else EXIT_OK


def _cmd_voices(args: argparse.Namespace) -> int:
    models = [catalog.model_info(args.model)] if args.model else list(catalog.MODELS.values())
    if args.json:
        rows = [
            {
                "model": m.id,
                "family": m.family.value,
                "takes_instruction": m.takes_instruction,
                "custom_voices_only": m.takes_custom_voices,
                "sample_rates": list(m.sample_rates),
                "voices": list(m.voices),
            }
            for m in models
        ]
        print(json.dumps({"models": rows, "language_types": list(catalog.LANGUAGE_TYPES)}, ensure_ascii=False))
        return EXIT_OK
    for m in models:
        flags = " (takes --instruction)" if m.takes_instruction else ""
        voices = ", ".join(m.voices) if m.voices else "custom voice ids only (cloned or designed for this model)"
        print(f"{m.id} [{m.family.value}]{flags}\n  {voices}")
    return EXIT_OK


def _port(value: str) -> int:
    """An argparse type: a TCP port, 0 for any free one."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, not {port}")
    return port


def _cmd_emulator(args: argparse.Namespace) -> int:
    from .emulator import EmulatorConfig, parse_fault, run_emulator

    config = EmulatorConfig(
        api_key=args.api_key,
        latency_ms=args.latency_ms,
        rtf=args.rtf,
        audio=args.audio,
        reject_status=args.reject_status,
        throttle=args.throttle,
        handshake_delay_ms=args.handshake_delay_ms,
        fail_after_chunks=args.fail_after_chunks,
        drop_after_chunks=args.drop_after_chunks,
        unknown_model=args.unknown_model,
        faults=tuple(parse_fault(spec) for spec in args.fault),
        idle_close_s=args.idle_close_s,
        max_connections=args.max_connections,
        commit_while_responding=args.commit_while_responding,
        max_commit_chars=args.max_commit_chars,
        max_session_records=args.max_session_records,
        max_events_per_session=args.max_events_per_session,
    )

    def ready(emulator: object) -> None:
        print(f"DashScope emulator ready: realtime {emulator.url}", flush=True)  # type: ignore[attr-defined]
        print(f"  DASHSCOPE_REALTIME_URL={emulator.url}", flush=True)  # type: ignore[attr-defined]
        print(f"  DASHSCOPE_HTTP_BASE_URL={emulator.http_base_url}", flush=True)  # type: ignore[attr-defined]
        print(f"  DASHSCOPE_API_KEY={args.api_key}", flush=True)
        print(f"  stats: GET {emulator.stats_url}", flush=True)  # type: ignore[attr-defined]

    asyncio.run(run_emulator(config, args.host, args.port, ready))
    return EXIT_OK


def _cmd_probe(args: argparse.Namespace) -> int:
    return probe_module.run(args)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .mcp_server import serve

    return serve(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    args = _build_parser().parse_args(argv)
    configure_logging(args.verbose)
    handlers = {
        "speak": _cmd_speak,
        "batch": _cmd_batch,
        "voices": _cmd_voices,
        "emulator": _cmd_emulator,
        "serve": _cmd_serve,
        "probe": _cmd_probe,
    }
    try:
        code = handlers[args.command](args)
        sys.stdout.flush()  # a closed stdout shows here, inside the handler below, not at exit
        return code
    except BrokenPipeError:
        return stdout_closed()
    except LocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TTSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED

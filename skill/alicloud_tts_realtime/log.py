"""The package logger and the stderr configuration used only by entry points."""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["EXIT_STDOUT_CLOSED", "LOGGER_NAME", "configure_logging", "stdout_closed"]

LOGGER_NAME = "alicloud_tts_realtime"
EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE, as a shell reports a program killed by a closed pipe


def configure_logging(verbosity: int = 0) -> None:
    """Send the package's logs to stderr: WARNING by default, INFO with ``-v``, DEBUG with ``-vv``.

    Only entry points (``main()``) call this; library code just uses ``logging.getLogger(__name__)``.
    stdout stays clean for results and for the stdio MCP transport.
    """
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger(LOGGER_NAME).setLevel(level)
    if verbosity < 2:
        # websocket-client, under the official SDK, logs a normal close ("Connection closed normally
        # (code 1000) - goodbye") and refused handshakes (with their headers) at ERROR; our errors
        # already say what failed, so it speaks only with -vv.
        logging.getLogger("websocket").setLevel(logging.CRITICAL)


def stdout_closed() -> int:
    """Handle a :class:`BrokenPipeError` on stdout in an entry point: exit quietly, no traceback.

    The reader went away (``voices --json | head -1``). stdout is pointed at ``/dev/null`` so that
    the interpreter's final flush does not fail a second time (the recipe of the Python docs,
    "Note on SIGPIPE"). Returns :data:`EXIT_STDOUT_CLOSED`.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor behind sys.stdout
        pass
    finally:
        os.close(devnull)
    return EXIT_STDOUT_CLOSED

"""The package logger and the stderr configuration used only by entry points."""

from __future__ import annotations

import logging
import sys

__all__ = ["LOGGER_NAME", "configure_logging"]

LOGGER_NAME = "alicloud_tts_realtime"


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
